package frame

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadMsg(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		chunked bool
		limit   int
		want    []string // messages read before the error
		err     error
	}{
		{"eom", "<a/>]]>]]><b>x</b>]]>]]>", false, 100, []string{"<a/>", "<b>x</b>"}, io.EOF},
		{"eom with > inside", "<a x='>'>]]</a>]]>]]>", false, 100, []string{"<a x='>'>]]</a>"}, io.EOF},
		{"eom truncated", "<a/>]]>]]", false, 100, nil, ErrFraming},
		{"eom too big", strings.Repeat("x", 101) + "]]>]]>", false, 100, nil, ErrTooBig},
		{"chunked", "\n#4\n<rpc\n#3\n/>x\n##\n\n#1\na\n##\n", true, 100, []string{"<rpc/>x", "a"}, io.EOF},
		{"64-bit overflow", "\n#18446744073709551617\nx\n##\n", true, 100, nil, ErrFraming},
		{"largest chunk size", "\n#4294967295\n", true, 1 << 40, nil, ErrFraming},
		{"past the largest", "\n#4294967296\nx\n##\n", true, 1 << 40, nil, ErrFraming},
		{"eleven digits", "\n#10000000000\nx", true, 1 << 40, nil, ErrFraming},
		{"leading zero", "\n#01\nx\n##\n", true, 100, nil, ErrFraming},
		{"zeros forever", "\n#" + strings.Repeat("0", 5<<20), true, 1 << 30, nil, ErrFraming},
		{"zero chunk", "\n#0\n\n##\n", true, 100, nil, ErrFraming},
		{"no chunks", "\n##\n", true, 100, nil, ErrFraming},
		{"no LF", "#4\nabcd\n##\n", true, 100, nil, ErrFraming},
		{"data past the limit", "\n#101\n" + strings.Repeat("x", 101) + "\n##\n", true, 100, nil, ErrTooBig},
		// 30 bytes of data in 30 chunks is 150 bytes of message.
		{"framing counts", strings.Repeat("\n#1\nx", 30) + "\n##\n", true, 100, nil, ErrTooBig},
		{"chunk truncated", "\n#10\nabc", true, 100, nil, ErrFraming},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in))
			if tt.chunked {
				r.Upgrade()
			}
			var got []string
			for {
				m, err := r.ReadMsg(nil, tt.limit)
				if err != nil {
					if !errors.Is(err, tt.err) {
						t.Errorf("ReadMsg() error = %v, want %v", err, tt.err)
					}
					break
				}
				got = append(got, string(m))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("messages %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzReadMsg(f *testing.F) {
	f.Add([]byte("\n#4\n<rpc\n#3\n/>x\n##\n"), true)
	f.Add([]byte("<a/>]]>]]>"), false)
	f.Add([]byte("\n#18446744073709551617\nx\n##\n"), true)
	f.Fuzz(func(t *testing.T, b []byte, chunked bool) {
		r := NewReader(bytes.NewReader(b))
		if chunked {
			r.Upgrade()
		}
		for range 64 {
			m, err := r.ReadMsg(nil, 4096)
			if err != nil {
				return
			}
			if len(m) > 4096 {
				t.Fatalf("message of %d bytes past the limit", len(m))
			}
			// What was read frames and reads back the same.
			if len(m) > 0 {
				rr := NewReader(bytes.NewReader(Append(nil, m, true)))
				rr.Upgrade()
				if back, err := rr.ReadMsg(nil, 1<<20); err != nil || !bytes.Equal(back, m) {
					t.Fatalf("round trip: %q, %v", back, err)
				}
			}
		}
	})
}

// TestRelease: the read buffer goes back only when nothing is buffered —
// a message the peer pipelined is not lost — and a released reader
// reads on.
func TestRelease(t *testing.T) {
	var in bytes.Buffer
	in.WriteString("one]]>]]>two]]>]]>")
	r := NewReader(&in)
	for _, want := range []string{"one", "two"} {
		got, err := r.ReadMsg(nil, 100)
		if err != nil || string(got) != want {
			t.Fatalf("ReadMsg = %q, %v; want %q", got, err, want)
		}
		r.Release()
		if want == "one" && r.br == nil {
			t.Fatal("released with a pipelined message buffered")
		}
	}
	if r.br != nil {
		t.Fatal("not released with nothing buffered")
	}
	in.WriteString("three]]>]]>")
	if got, err := r.ReadMsg(nil, 100); err != nil || string(got) != "three" {
		t.Fatalf("after release: %q, %v", got, err)
	}
}
