package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/openriv/riv/collector/verifier"
)

// TestAddRemoveAttest: a device added while the scheduler runs is polled;
// one removed is not any more, and an on-demand poll of a removed device
// returns instead of waiting. The devices here cannot be reached (no
// listener): unreachable is their state, with the error, never a verdict.
func TestAddRemoveAttest(t *testing.T) {
	v := verifier.New(verifier.Policy{}, nil)
	target := verifier.Target{Name: "x", TLSAddr: "127.0.0.1:1", StageTimeout: 100 * time.Millisecond}
	s := New(Options{Interval: time.Hour, PollTimeout: time.Second}, []Device{{Name: "a", Target: target, Verifier: v}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	st, err := s.Attest(actx, "a")
	if err != nil || st.Unreachable == "" || st.Result != nil || st.Polls == 0 {
		t.Fatalf("attest a: %+v %v", st, err)
	}
	if err := s.Add(Device{Name: "b", Target: target, Verifier: v}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Device{Name: "b", Target: target, Verifier: v}); err == nil {
		t.Error("a device added twice")
	}
	if st, err := s.Attest(actx, "b"); err != nil || st.Unreachable == "" {
		t.Errorf("attest b: %+v %v", st, err)
	}
	if p := s.Posture(); p["unreachable"] != 2 {
		t.Errorf("posture %v", p)
	}
	if err := s.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attest(actx, "b"); err == nil {
		t.Error("attest of a removed device")
	}
	if _, ok := s.Device("b"); ok || len(s.Devices()) != 1 {
		t.Errorf("devices after the removal: %+v", s.Devices())
	}
}
