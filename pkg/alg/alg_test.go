package alg

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestSM3(t *testing.T) {
	// Test vectors from GB/T 32905-2016 Appendix A.
	tests := []struct{ in, want string }{
		{"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{strings.Repeat("abcd", 16), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(SM3_256.Sum([]byte(tt.in))); got != tt.want {
			t.Errorf("SM3(%q) = %s, want %s", tt.in, got, tt.want)
		}
		// Split writes must give the same digest as one write.
		h, _ := SM3_256.New()
		for i := 0; i < len(tt.in); i++ {
			h.Write([]byte{tt.in[i]})
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != tt.want {
			t.Errorf("SM3(%q) bytewise = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseHash(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ID
	}{{"sha1", SHA1}, {"SHA-256", SHA256}, {"sha384", SHA384}, {"sha512", SHA512}, {"sm3_256", SM3_256}} {
		got, err := ParseHash(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseHash(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
		if got.String() != strings.ToLower(strings.ReplaceAll(tt.in, "-", "")) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseHash("md5"); err == nil {
		t.Error("ParseHash(md5) succeeded, want error")
	}
}
