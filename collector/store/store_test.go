package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/quote"
)

func TestHistoryAndReboot(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "riv.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	res := func(reset uint32, rebooted bool, status ear.TrustTier, reasons ...string) *verifier.Result {
		r := &verifier.Result{Device: "rtr-1", Serial: "RTR-1", Status: status, Reasons: reasons, Rebooted: rebooted,
			Clock: quote.ClockInfo{ResetCount: reset}, EAR: []byte("a.b.c"), Time: now}
		r.Vector.Executables = ear.ApprovedBootClaim
		now = now.Add(time.Minute)
		return r
	}
	for _, r := range []*verifier.Result{
		res(5, false, ear.TrustTierAffirming),
		res(5, false, ear.TrustTierWarning, "file-system: /tmp/x not in any signed RIM"),
		res(6, true, ear.TrustTierAffirming),
	} {
		if _, err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Reopen: the history survived.
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.History(ctx, "rtr-1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 {
		t.Fatalf("%d results, want 3", len(h))
	}
	if h[0].Superseded != "" || !h[0].Rebooted || h[0].ResetCount != 6 {
		t.Errorf("latest = %+v", h[0])
	}
	for _, old := range h[1:] {
		if old.Superseded == "" {
			t.Errorf("result %d before the reboot not superseded", old.ID)
		}
	}
	if h[1].Status != "warning" || len(h[1].Reasons) != 1 || h[1].Vector.Executables != ear.ApprovedBootClaim {
		t.Errorf("round trip lost data: %+v", h[1])
	}
}
