package pcr

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/pkg/alg"
)

func TestValuesJSON(t *testing.T) {
	v := Values{}
	v.Set(alg.SHA256, 0, alg.SHA256.Sum([]byte("a")))
	v.Set(alg.SHA1, 10, alg.SHA1.Sum([]byte("b")))
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"sha256":{"0":"ca978112`) {
		t.Errorf("Marshal = %s", b)
	}
	var got Values
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(v) {
		t.Errorf("round trip: %v", got.Diff(v))
	}
	for _, bad := range []string{`{"md5":{"0":"00"}}`, `{"sha1":{"24":"` + strings.Repeat("00", 20) + `"}}`, `{"sha1":{"0":"00"}}`, `{"sha1":{"x":"00"}}`, `[1]`} {
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

// The direct encoder writes what encoding/json writes for the same values
// as maps of strings, byte for byte (stored states and EARs hold it).
func TestValuesJSONAsMaps(t *testing.T) {
	for _, v := range []Values{
		{},
		{alg.SHA256: {}},
		full(alg.SHA256, alg.SHA384),
		full(alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512),
	} {
		want := map[string]map[string]string{}
		for b, m := range v {
			want[b.String()] = map[string]string{}
			for i, x := range m {
				want[b.String()][strconv.Itoa(i)] = hex.EncodeToString(x)
			}
		}
		wb, _ := json.Marshal(want)
		gb, err := v.MarshalJSON()
		if err != nil || string(gb) != string(wb) {
			t.Errorf("MarshalJSON = %s, %v\nwant %s", gb, err, wb)
		}
	}
}

func full(banks ...alg.ID) Values {
	v := Values{}
	for _, b := range banks {
		for i := 0; i <= MaxPCR; i++ {
			v.Set(b, i, b.Sum([]byte{byte(i), byte(b)}))
		}
	}
	return v
}

func TestSelection(t *testing.T) {
	got, err := ParseSelection("sha256:0-3,7+sha1:10")
	if err != nil {
		t.Fatal(err)
	}
	want := []Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 7}}, {Bank: alg.SHA1, PCRs: []int{10}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseSelection (-want +got):\n%s", diff)
	}
	if !EqualSelections(got, []Selection{{Bank: alg.SHA1, PCRs: []int{10}}, {Bank: alg.SHA256, PCRs: []int{7, 0, 1, 2, 3}}}) {
		t.Error("EqualSelections ignores order")
	}
	miss := MissingFrom([]Selection{{Bank: alg.SHA256, PCRs: []int{0, 1}}}, got)
	if diff := cmp.Diff([]string{"sha256 PCRs [2 3 7]", "sha1 PCRs [10]"}, miss); diff != "" {
		t.Errorf("MissingFrom (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"sha256", "md5:1", "sha1:24", "sha1:3-1", "sha1:a"} {
		if _, err := ParseSelection(bad); err == nil {
			t.Errorf("ParseSelection(%q) succeeded", bad)
		}
	}
}

func TestInitial(t *testing.T) {
	if v := Initial(alg.SHA256, 17); v[0] != 0xff || v[31] != 0xff {
		t.Errorf("PCR 17 reset value %x, want all ones", v)
	}
	if v := Initial(alg.SHA256, 16); v[0] != 0 {
		t.Errorf("PCR 16 reset value %x, want zeros", v)
	}
}

// FuzzValuesJSON: where the one-pass reader decides, it reads what the
// general one does.
func FuzzValuesJSON(f *testing.F) {
	for _, v := range []Values{{}, full(alg.SHA256), full(alg.SHA1, alg.SHA256, alg.SHA384)} {
		b, _ := v.MarshalJSON()
		f.Add(b)
	}
	for _, s := range []string{`{"sha1":{}}`, `{"sha1":{"05":"` + strings.Repeat("00", 20) + `"}}`, `{"sha1":{"5":"` + strings.Repeat("AB", 20) + `"}}`, `{"sha1":{},"sha1":{}}`, `{ "sha1":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseCompact(b)
		if !ok {
			return
		}
		var slow Values
		if err := slow.unmarshalJSON(b); err != nil {
			t.Fatalf("one-pass read %s; the general reader: %v", b, err)
		}
		if !fast.Equal(slow) || len(fast) != len(slow) {
			t.Fatalf("%s: one-pass %v, general %v", b, fast, slow)
		}
	})
}
