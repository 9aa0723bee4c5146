package verifier

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// TestKeepPCRs: kept PCR values are the values given, whatever they are
// (nil or empty, a bank without values, a PCR or a value the compact
// form cannot hold), and compact when they are a replay's.
func TestKeepPCRs(t *testing.T) {
	d := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	boot := pcr.Values{alg.SHA256: {}, alg.SHA384: {}}
	for i := range 10 {
		boot[alg.SHA256][i] = d(byte(i), 32)
		boot[alg.SHA384][i] = d(byte(i+100), 48)
	}
	for _, tc := range []struct {
		name    string
		in      pcr.Values
		compact bool
	}{
		{"nil", nil, true},
		{"empty", pcr.Values{}, true},
		{"a bank without values", pcr.Values{alg.SHA256: {}}, true},
		{"boot PCRs in two banks", boot, true},
		{"PCR 10", pcr.Values{alg.SHA256: {10: d(7, 32)}}, true},
		{"PCR 31", pcr.Values{alg.SHA1: {31: d(1, 20), 0: d(2, 20)}}, true},
		{"PCR 32", pcr.Values{alg.SHA256: {32: d(1, 32)}}, false},
		{"a PCR below 0", pcr.Values{alg.SHA256: {-1: d(1, 32)}}, false},
		{"a value of another size", pcr.Values{alg.SHA256: {0: d(1, 32), 1: d(1, 20)}}, false},
		{"not a hash bank", pcr.Values{alg.ID(0x7777): {0: d(1, 32)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := keepPCRs(tc.in)
			if diff := cmp.Diff(tc.in, k.values()); diff != "" {
				t.Errorf("keepPCRs(%v).values() differs (-in +out):\n%s", tc.in, diff)
			}
			if compact := k.other == nil; compact != tc.compact {
				t.Errorf("keepPCRs(%v) compact = %v, want %v", tc.in, compact, tc.compact)
			}
		})
	}
}
