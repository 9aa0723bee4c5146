package verifier

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// FuzzRestore: a damaged stored state (a corrupted database, an older
// collector's) is an error or a state, never a panic; a state that
// restores snapshots again.
func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"v":1,"keys":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],"tpms":{"":{"clock":{"clock":5,"reset_count":1,"restart_count":0,"safe":true},` +
		`"bios":{"last":40,"banks":[11],"vals":{"sha256":{"0":"` + strings.Repeat("0", 64) + `"}},"rims":"` + zeros(43) + `=","vector":{}},` +
		`"runtime":[{"type":"ima","banks":[11],"rims":"` + zeros(43) + `=","model":"m","seen":true,"last":3,"vals":{},"findings":[{"items":["a"]},{},{},{},{}]}]}}}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"keys":[],"tpms":{"x\u0000y":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v := New(Policy{Name: "p"}, nil)
		if err := v.Restore("d", b); err != nil {
			return
		}
		if !v.Knows("d") {
			t.Fatal("Restore succeeded and the verifier knows nothing of the device")
		}
		if _, err := v.Snapshot("d"); err != nil {
			t.Fatalf("a restored state does not snapshot: %v", err)
		}
	})
}

func zeros(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'A'
	}
	return string(b)
}

// TestSnapshotRoundTrip: a restored state snapshots to what it was
// restored from — the PCR values, the runtime logs in order with their
// findings, the boot claims, the line cards.
func TestSnapshotRoundTrip(t *testing.T) {
	val := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	boot := pcr.Values{alg.SHA256: {}}
	for i := range 10 {
		boot[alg.SHA256][i] = val(byte(i), 32)
	}
	rims := val(9, 32)
	clock := quote.ClockInfo{Clock: 5000, ResetCount: 2, Safe: true}
	in := snapshot{Version: snapshotVersion, Keys: [][]byte{val(1, 32), val(2, 32)}, TPMs: map[string]tpmSnapshot{
		"": {Clock: &clock,
			Bios: &biosSnapshot{Last: 40, Banks: []alg.ID{alg.SHA256}, Vals: boot, RIMs: rims,
				Vector: ear.TrustVector{Executables: ear.ApprovedBootClaim}, Reasons: []string{"a boot finding"}},
			Runtime: []runtimeSnapshot{
				{Type: logIMA, Banks: []alg.ID{alg.SHA256}, RIMs: rims, Model: "m", Seen: true, Last: 7, Vals: pcr.Values{alg.SHA256: {10: val(3, 32)}},
					Findings: [5]findingsSnapshot{{Items: []string{"/a (sha256:00)", "/b (sha256:01)"}, More: 3}, {}, {}, {More: 1}, {}}},
				{Type: logNetequip, Banks: []alg.ID{alg.SHA256}, RIMs: rims, Model: "m", Seen: true, Last: 11, Vals: pcr.Values{alg.SHA256: {10: val(4, 32)}}},
			},
			Cards: map[string][]byte{"lc1": val(5, 91)},
		},
	}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	v := New(Policy{Name: "p"}, nil)
	if err := v.Restore("d", b); err != nil {
		t.Fatal(err)
	}
	b, err = v.Snapshot("d")
	if err != nil {
		t.Fatal(err)
	}
	var out snapshot
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("Snapshot(Restore(s)) differs from s (-s +snapshot):\n%s", diff)
	}
}
