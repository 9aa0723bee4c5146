package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// TestTPMStateRollback is item A2 end to end, on swtpm: the TPM's state is
// saved, the router reboots twice (each boot re-attested and affirmed),
// then the saved state is restored — a cloned or rolled-back TPM, same
// keys, same identity. Its resetCount is lower than the verifier last saw:
// contraindicated, and still so on the next poll.
func TestTPMStateRollback(t *testing.T) {
	e := newEnv(t)
	sw := tpmtest.StartSwtpm(t, "sha256")
	poll := func() *device.Device {
		t.Helper()
		return startWithOpts(t, e, device.Options{TPM: sw.Spec(), Serial: "RTR-0042", Image: router.DefaultImage("2.0")})
	}
	// The NOS shuts the TPM down in order before power-off, so that its
	// clock is safe after the next boot.
	powerOff := func(d *device.Device) {
		t.Helper()
		if err := d.TPM.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.Close()
		sw.Stop()
	}
	d := poll()
	if r := e.appraiseSSH(t, d); r.Status != ear.TrustTierAffirming {
		t.Fatalf("first boot: %v %v", r.Status, r.Reasons)
	}
	powerOff(d)
	saved := t.TempDir()
	copyState(t, sw.Dir, saved)
	for i := range 2 {
		sw.Restart(t)
		d = poll()
		r := e.appraiseSSH(t, d)
		if r.Status != ear.TrustTierAffirming || !r.Rebooted {
			t.Fatalf("reboot %d: %v rebooted=%v %v", i+1, r.Status, r.Rebooted, r.Reasons)
		}
		if i == 0 {
			powerOff(d)
			continue
		}
		// A power loss without TPM2_Shutdown: the clock may have lost
		// time, which the next quote says (safe = 0) and the verifier
		// reports as a warning.
		d.Close()
		sw.Stop()
		sw.Restart(t)
		d = poll()
		r = e.appraiseSSH(t, d)
		if r.Status != ear.TrustTierWarning || !strings.Contains(strings.Join(r.Reasons, "\n"), "safe = 0") {
			t.Errorf("after a power loss: %v %v, want a warning for safe = 0", r.Status, r.Reasons)
		}
		powerOff(d)
	}
	copyState(t, saved, sw.Dir)
	sw.Restart(t)
	d = poll()
	defer d.Close()
	for i := range 2 {
		r := e.appraiseSSH(t, d)
		reasons := strings.Join(r.Reasons, "\n")
		if r.Status != ear.TrustTierContraindicated || !strings.Contains(reasons, "resetCount went back") {
			t.Errorf("rolled-back TPM, poll %d: %v\n%s\nwant contraindicated: resetCount went back", i+1, r.Status, reasons)
		}
	}
}

// copyState copies swtpm's state files (not its sockets) from src to dst.
func copyState(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
