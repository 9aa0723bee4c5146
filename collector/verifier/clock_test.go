package verifier

import (
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/quote"
)

// TestClock is item A2: TPMS_CLOCK_INFO judged against the previous
// appraisal of the same device (TPM 2.0 Part 1 §36.3: resetCount and
// restartCount only grow, and Clock only advances while the TPM runs).
func TestClock(t *testing.T) {
	ci := func(clock uint64, reset, restart uint32, safe bool) quote.ClockInfo {
		return quote.ClockInfo{Clock: clock, ResetCount: reset, RestartCount: restart, Safe: safe}
	}
	base := ci(50_000, 4, 0, true)
	tests := []struct {
		name      string
		prev      *quote.ClockInfo
		now       quote.ClockInfo
		ok        bool
		rebooted  bool
		restarted bool
		hardware  ear.TrustClaim
		reason    string
	}{
		{"first appraisal", nil, base, true, false, false, ear.NoClaim, ""},
		{"time passes", &base, ci(60_000, 4, 0, true), true, false, false, ear.NoClaim, ""},
		{"reboot", &base, ci(70_000, 5, 0, true), true, true, false, ear.NoClaim, ""},
		{"reboot with the clock behind (lost before an unorderly shutdown)", &base, ci(10_000, 5, 0, false), true, true, false, ear.UnsafeHardwareClaim, "safe = 0"},
		{"restart (resume)", &base, ci(70_000, 4, 1, true), true, true, true, ear.NoClaim, ""},
		{"resetCount back", &base, ci(90_000, 3, 0, true), false, false, false, ear.ContraindicatedHardwareClaim, "resetCount went back from 4 to 3"},
		{"restartCount back", &quote.ClockInfo{Clock: 50_000, ResetCount: 4, RestartCount: 2, Safe: true}, ci(90_000, 4, 1, true), false, false, false, ear.ContraindicatedHardwareClaim, "restartCount went back from 2 to 1"},
		{"clock back in one reset epoch", &base, ci(40_000, 4, 0, true), false, false, false, ear.ContraindicatedHardwareClaim, "clock went back from 50000 ms to 40000 ms"},
		{"clock back across a restart", &base, ci(40_000, 4, 1, true), false, false, false, ear.ContraindicatedHardwareClaim, "clock went back"},
		{"not safe", &base, ci(60_000, 4, 0, false), true, false, false, ear.UnsafeHardwareClaim, "safe = 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := New(Policy{}, nil)
			if tt.prev != nil {
				v.state["d"] = &deviceState{clockSeen: true, clock: *tt.prev, runtime: runtimeStates{{logType: logNetequip, seen: true, last: 7}}}
			}
			p := &poll{v: v, r: &Result{}, device: "d", attest: &quote.Attest{ClockInfo: tt.now}}
			ok := p.clock()
			reasons := strings.Join(p.r.Reasons, "\n")
			if ok != tt.ok || p.r.Rebooted != tt.rebooted || p.r.Restarted != tt.restarted || p.r.Vector.Hardware != tt.hardware {
				t.Errorf("clock() = %v, rebooted %v restarted %v hardware %v; want %v, %v %v %v (reasons %q)", ok, p.r.Rebooted, p.r.Restarted, p.r.Vector.Hardware, tt.ok, tt.rebooted, tt.restarted, tt.hardware, reasons)
			}
			if !strings.Contains(reasons, tt.reason) {
				t.Errorf("reasons %q, want %q", reasons, tt.reason)
			}
			st := v.state["d"]
			switch {
			case !tt.ok:
				// A rollback never lowers what the verifier remembers, so
				// the next poll of the rolled-back TPM is caught too.
				if st.clock != *tt.prev {
					t.Errorf("kept clock %+v, want it unchanged %+v", st.clock, *tt.prev)
				}
			case st.clock != tt.now:
				t.Errorf("kept clock %+v, want %+v", st.clock, tt.now)
			}
			if tt.rebooted && len(st.runtime) != 0 {
				t.Error("logs not started over after a reboot")
			}
			if tt.prev != nil && tt.ok && !tt.rebooted && st.runtime.of(logNetequip) == nil {
				t.Error("log state dropped without a reboot")
			}
		})
	}
}
