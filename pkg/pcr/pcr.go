// Package pcr holds PCR values by bank, PCR selections, and the JSON form RIV
// uses for both ({"sha256":{"0":"<hex>",...},...}, DESIGN.md §4). It is the
// common currency between event-log replay and quote verification.
package pcr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/openriv/riv/pkg/alg"
)

// MaxPCR is the highest PCR index RIV accepts (TPM 2.0 PC Client: 24 PCRs).
const MaxPCR = 23

// Values maps a bank to PCR index to value.
type Values map[alg.ID]map[int][]byte

// Get returns the value of PCR idx in bank, or nil.
func (v Values) Get(bank alg.ID, idx int) []byte { return v[bank][idx] }

// Set stores a copy of val.
func (v Values) Set(bank alg.ID, idx int, val []byte) {
	if v[bank] == nil {
		v[bank] = map[int][]byte{}
	}
	v[bank][idx] = bytes.Clone(val)
}

// Banks returns the banks present, sorted by algorithm ID.
func (v Values) Banks() []alg.ID { return slices.Sorted(maps.Keys(v)) }

// Indexes returns the PCR indexes present in bank, ascending.
func (v Values) Indexes(bank alg.ID) []int { return slices.Sorted(maps.Keys(v[bank])) }

// Equal reports whether v and w hold the same banks, PCRs and values.
func (v Values) Equal(w Values) bool {
	if len(v) != len(w) {
		return false
	}
	for b, m := range v {
		n, ok := w[b]
		if !ok || len(n) != len(m) {
			return false
		}
		for i, x := range m {
			if y, ok := n[i]; !ok || !bytes.Equal(x, y) {
				return false
			}
		}
	}
	return true
}

// Diff lists the PCRs of want that v lacks or holds with another value, as
// "sha256 PCR 4: got ab12.., want cd34..". It returns nil when v covers want.
func (v Values) Diff(want Values) []string {
	var out []string
	for _, b := range want.Banks() {
		for _, i := range want.Indexes(b) {
			got := v.Get(b, i)
			if got == nil {
				out = append(out, fmt.Sprintf("%v PCR %d: missing, want %x", b, i, want[b][i]))
			} else if !bytes.Equal(got, want[b][i]) {
				out = append(out, fmt.Sprintf("%v PCR %d: got %x, want %x", b, i, got, want[b][i]))
			}
		}
	}
	return out
}

// Extend returns H(cur || digest), the value of a PCR holding cur after
// TPM2_PCR_Extend with digest.
func Extend(bank alg.ID, cur, digest []byte) []byte {
	return bank.Sum(cur, digest)
}

// Initial returns the reset value of a PCR per the PC Client PTP: PCRs 17–22
// (the DRTM PCRs) reset to all ones, the others to zeros.
func Initial(bank alg.ID, idx int) []byte {
	v := make([]byte, bank.Size())
	if idx >= 17 && idx <= 22 {
		for i := range v {
			v[i] = 0xff
		}
	}
	return v
}

// MarshalJSON writes {"sha256":{"0":"<hex>",...}} with bank names lower-case,
// keys in the order encoding/json gives a map's (sorted as strings). It is
// written directly: a collector encodes the PCRs of every poll twice (the
// EAR's claims and the kept state), and a map of strings per bank was a
// third of the allocations of saving a poll.
func (v Values) MarshalJSON() ([]byte, error) {
	banks := make([]alg.ID, 0, len(v))
	for b := range v {
		banks = append(banks, b)
	}
	slices.SortFunc(banks, func(a, b alg.ID) int { return strings.Compare(a.String(), b.String()) })
	n := 2
	for _, m := range v {
		for _, x := range m {
			n += 2*len(x) + 10
		}
	}
	out := make([]byte, 0, n+16*len(v))
	out = append(out, '{')
	var idx []int
	for bi, b := range banks {
		if bi > 0 {
			out = append(out, ',')
		}
		name, _ := json.Marshal(b.String()) // escaped, as a map key would be
		out = append(out, name...)
		out = append(out, ':', '{')
		idx = idx[:0]
		for i := range v[b] {
			idx = append(idx, i)
		}
		slices.SortFunc(idx, compareDecimal)
		for j, i := range idx {
			if j > 0 {
				out = append(out, ',')
			}
			out = append(out, '"')
			out = strconv.AppendInt(out, int64(i), 10)
			out = append(out, '"', ':', '"')
			out = hex.AppendEncode(out, v[b][i])
			out = append(out, '"')
		}
		out = append(out, '}')
	}
	return append(out, '}'), nil
}

// compareDecimal orders ints as their decimal strings sort.
func compareDecimal(a, b int) int {
	var x, y [24]byte
	return bytes.Compare(strconv.AppendInt(x[:0], int64(a), 10), strconv.AppendInt(y[:0], int64(b), 10))
}

// parseCompact reads exactly the form MarshalJSON writes — no white
// space, no escapes, known banks, indices and values in range — in one
// pass (a collector restores 100,000 devices' values at start;
// encoding/json's maps of strings were a third of it). Anything else is
// not decided here (false).
func parseCompact(b []byte) (Values, bool) {
	out := Values{}
	seen := map[alg.ID]bool{}
	str := func() ([]byte, bool) { // a string without escapes
		if len(b) == 0 || b[0] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(b[1:], '"')
		if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
			return nil, false
		}
		s := b[1 : 1+end]
		b = b[end+2:]
		return s, true
	}
	punct := func(c byte) bool {
		if len(b) == 0 || b[0] != c {
			return false
		}
		b = b[1:]
		return true
	}
	if !punct('{') {
		return nil, false
	}
	for first := true; !punct('}'); first = false {
		if !first && !punct(',') {
			return nil, false
		}
		bn, ok := str()
		if !ok || !punct(':') || !punct('{') {
			return nil, false
		}
		bank, err := alg.ParseHash(string(bn))
		if err != nil || seen[bank] {
			return nil, false
		}
		seen[bank] = true
		var m map[int][]byte // made at its first value, as Set does
		for first := true; !punct('}'); first = false {
			if !first && !punct(',') {
				return nil, false
			}
			is, ok := str()
			if !ok || !punct(':') {
				return nil, false
			}
			hs, ok := str()
			if !ok || len(is) == 0 || len(is) > 2 || len(hs) != 2*bank.Size() {
				return nil, false
			}
			idx := 0
			for _, c := range is {
				if c < '0' || c > '9' {
					return nil, false
				}
				idx = 10*idx + int(c-'0')
			}
			if idx > MaxPCR || len(is) == 2 && is[0] == '0' || m[idx] != nil {
				return nil, false
			}
			val := make([]byte, bank.Size())
			if _, err := hex.Decode(val, hs); err != nil {
				return nil, false
			}
			if m == nil {
				m = map[int][]byte{}
				out[bank] = m
			}
			m[idx] = val
		}
	}
	return out, len(b) == 0
}

// UnmarshalJSON reads the form MarshalJSON writes, checking each value's
// length against its bank.
func (v *Values) UnmarshalJSON(b []byte) error {
	if out, ok := parseCompact(b); ok {
		*v = out
		return nil
	}
	return v.unmarshalJSON(b)
}

func (v *Values) unmarshalJSON(b []byte) error {
	var in map[string]map[string]string
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("pcr values: %w", err)
	}
	out := Values{}
	for bn, m := range in {
		bank, err := alg.ParseHash(bn)
		if err != nil {
			return fmt.Errorf("pcr values: bank %q: %w", bn, err)
		}
		for is, hs := range m {
			idx, err := strconv.Atoi(is)
			if err != nil || idx < 0 || idx > MaxPCR {
				return fmt.Errorf("pcr values: %s: PCR index %q out of range 0-%d", bn, is, MaxPCR)
			}
			val, err := hex.DecodeString(hs)
			if err != nil {
				return fmt.Errorf("pcr values: %s PCR %d: %w", bn, idx, err)
			}
			if len(val) != bank.Size() {
				return fmt.Errorf("pcr values: %s PCR %d: %d bytes, want %d", bn, idx, len(val), bank.Size())
			}
			out.Set(bank, idx, val)
		}
	}
	*v = out
	return nil
}

// Selection is one TPMS_PCR_SELECTION: a bank and the PCRs chosen in it.
type Selection struct {
	Bank alg.ID
	PCRs []int // ascending, no duplicates
}

func (s Selection) String() string { return fmt.Sprintf("%v:%v", s.Bank, s.PCRs) }

// Mask returns the PCR bitmap (bit i = PCR i) of s.
func (s Selection) Mask() uint32 {
	var m uint32
	for _, p := range s.PCRs {
		m |= 1 << uint(p)
	}
	return m
}

// FromMask builds a selection from a bitmap.
func FromMask(bank alg.ID, mask uint32) Selection {
	s := Selection{Bank: bank}
	for i := 0; i <= MaxPCR; i++ {
		if mask&(1<<uint(i)) != 0 {
			s.PCRs = append(s.PCRs, i)
		}
	}
	return s
}

// EqualSelections compares two selection lists as sets of (bank, PCR).
func EqualSelections(a, b []Selection) bool {
	ma, mb := masks(a), masks(b)
	return maps.Equal(ma, mb)
}

func masks(s []Selection) map[alg.ID]uint32 {
	m := map[alg.ID]uint32{}
	for _, x := range s {
		if mk := x.Mask(); mk != 0 {
			m[x.Bank] |= mk
		}
	}
	return m
}

// MissingFrom describes what of want is absent from got (a TPM silently
// drops banks it has not allocated), e.g. "sha384 PCRs [0 1]".
func MissingFrom(got, want []Selection) []string {
	mg := masks(got)
	var out []string
	for _, w := range want {
		if miss := w.Mask() &^ mg[w.Bank]; miss != 0 {
			out = append(out, fmt.Sprintf("%v PCRs %v", w.Bank, FromMask(w.Bank, miss).PCRs))
		}
	}
	return out
}

// ParseSelection parses "sha256:0,1,2+sha1:0-7" (tpm2-tools style; ranges
// allowed) into selections.
func ParseSelection(s string) ([]Selection, error) {
	var out []Selection
	for _, part := range splitAny(s, "+") {
		bn, list, ok := cut(part, ':')
		if !ok {
			return nil, fmt.Errorf("pcr selection %q: want BANK:LIST", part)
		}
		bank, err := alg.ParseHash(bn)
		if err != nil {
			return nil, fmt.Errorf("pcr selection %q: %w", part, err)
		}
		var mask uint32
		for _, item := range splitAny(list, ",") {
			lo, hi, isRange := cut(item, '-')
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b > MaxPCR || a > b {
				return nil, fmt.Errorf("pcr selection %q: bad PCR %q", part, item)
			}
			for i := a; i <= b; i++ {
				mask |= 1 << uint(i)
			}
		}
		out = append(out, FromMask(bank, mask))
	}
	return out, nil
}

func cut(s string, sep byte) (string, string, bool) {
	if i := bytes.IndexByte([]byte(s), sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func splitAny(s, sep string) []string {
	var out []string
	for _, p := range bytes.Split([]byte(s), []byte(sep)) {
		if len(p) > 0 {
			out = append(out, string(p))
		}
	}
	return out
}
