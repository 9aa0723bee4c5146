package verifier

import (
	"strings"
	"testing"
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
