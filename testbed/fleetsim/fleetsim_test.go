package fleetsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
)

// newVerifier is a collector's verifier for the fleet: its manufacturer
// as anchor, its vendor's RIMs loaded from disk.
func newVerifier(t testing.TB, f *Fleet) *verifier.Verifier {
	t.Helper()
	idx, err := f.Index(filepath.Join(t.TempDir(), "rims"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return verifier.New(verifier.Policy{Anchors: f.Anchors(), RIMs: idx, Banks: []alg.ID{alg.SHA256}}, key)
}

// appraise polls d once over a loopback stream.
func appraise(t testing.TB, v *verifier.Verifier, d *Device) *verifier.Result {
	t.Helper()
	c, err := netconf.Open(context.Background(), d.Loopback())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := v.Appraise(context.Background(), d.Serial, c, d.IdentityKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSimulatedDeviceAppraised: a simulated router is a router to the
// collector — affirming when clean, incremental as its log grows,
// contraindicated when it runs an unsigned binary, re-attested after a
// reboot — and one whose software TPM was extended behind its log's back
// is caught.
func TestSimulatedDeviceAppraised(t *testing.T) {
	ctx := context.Background()
	f, err := New(Options{Files: 40})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, f)
	d, err := f.Device(ctx, "SIM-00001")
	if err != nil {
		t.Fatal(err)
	}
	r := appraise(t, v, d)
	if r.Status != ear.TrustTierAffirming || r.Serial != "SIM-00001" {
		t.Fatalf("clean device: %v serial %q, reasons %q", r.Status, r.Serial, r.Reasons)
	}
	if err := d.Measure(ctx, 25); err != nil {
		t.Fatal(err)
	}
	if r = appraise(t, v, d); r.Status != ear.TrustTierAffirming || r.Rebooted {
		t.Fatalf("after 25 more files: %v rebooted=%v, reasons %q", r.Status, r.Rebooted, r.Reasons)
	}
	if err := d.Tamper(ctx); err != nil {
		t.Fatal(err)
	}
	if r = appraise(t, v, d); r.Status == ear.TrustTierAffirming {
		t.Fatalf("unsigned binary run: %v", r.Status)
	}
	if err := d.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if r = appraise(t, v, d); r.Status != ear.TrustTierAffirming || !r.Rebooted {
		t.Fatalf("after a reboot: %v rebooted=%v, reasons %q", r.Status, r.Rebooted, r.Reasons)
	}
	// Extended without a log entry: the log no longer replays.
	d.TPM.Extend(ctx, 10, map[alg.ID][]byte{alg.SHA256: alg.SHA256.Sum([]byte("hidden"))})
	if r = appraise(t, v, d); r.Status != ear.TrustTierContraindicated {
		t.Fatalf("hidden extend: %v, reasons %q", r.Status, r.Reasons)
	}
}

// TestGrowingWhilePolled: a device whose NOS keeps measuring files while
// a collector polls it is affirming at every poll — its log has each
// entry before PCR 10 does (the kernel's order), so a quote never covers
// an entry the log read after it lacks.
func TestGrowingWhilePolled(t *testing.T) {
	ctx := context.Background()
	f, err := New(Options{Files: 40})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, f)
	d, err := f.Device(ctx, "SIM-00002")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	grown := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				grown <- nil
				return
			default:
			}
			if err := d.Measure(ctx, 1); err != nil {
				grown <- err
				return
			}
			// A busy NOS, but not more than the verifier's bound on
			// entries logged between a quote and the log read after it.
			time.Sleep(100 * time.Microsecond)
		}
	}()
	c, err := netconf.Open(ctx, d.Loopback())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	polls := 0
	for range 200 {
		r, err := v.Appraise(ctx, d.Serial, c, d.IdentityKey())
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != ear.TrustTierAffirming {
			t.Errorf("poll %d while the log grows: %v, reasons %q", polls, r.Status, r.Reasons)
			break
		}
		polls++
	}
	close(stop)
	if err := <-grown; err != nil {
		t.Fatal(err)
	}
}
