// Package e2e runs the product end to end: simulated routers served by
// the real agent over NETCONF, appraised by the real collector verifier.
package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

type env struct {
	mfr   *identity.CA
	vend  *vendor.Vendor
	rims  string // the published RIM directory
	index *rim.Index
	v     *verifier.Verifier
}

// newEnv makes the manufacturer, the vendor's signed RIMs for images 1.0
// and 2.0 (2.0 supersedes 1.0) as the vendor publishes them — CoSWIDs,
// PCR CoRIMs, base RIMs with their support RIMs, configuration RIMs —
// loaded the way the collector loads them, and a verifier trusting both.
func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	mfr, err := identity.NewCA("RIV Test Manufacturer", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	vend, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = vend.Publish(ctx, tp, dir, "1.0", "2.0")
	tp.Close()
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := verifier.LoadRIMs(dir, vend.Roots())
	if err != nil {
		t.Fatal(err)
	}
	anchors := x509.NewCertPool()
	anchors.AddCert(mfr.Cert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &env{mfr: mfr, vend: vend, rims: dir, index: idx, v: verifier.New(verifier.Policy{Anchors: anchors, RIMs: idx, Banks: []alg.ID{alg.SHA256}}, key)}
}

func (e *env) appraiseSSH(t *testing.T, d *device.Device) *verifier.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := netconf.DialSSH(ctx, d.SSHAddr, d.User, d.SSHClientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := e.v.Appraise(ctx, d.Serial, c, c.HostKey)
	if err != nil {
		t.Fatalf("Appraise() = %v", err)
	}
	return r
}

func start(t testing.TB, e *env, img *router.Image) *device.Device {
	t.Helper()
	d, err := device.Start(context.Background(), device.Options{Image: img, ManufacturerCA: e.mfr})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deviceCase is a device booted from img, after (when set) run on it,
// and the verdict it must get, with a word of its reasons.
type deviceCase struct {
	name   string
	img    *router.Image
	after  func(*testing.T, *device.Device)
	status ear.TrustTier
	reason string
}

// deviceCases are the devices every way of appraising is held to: clean,
// a tampered kernel, a rollback, debug mode and an unknown binary.
func deviceCases() []deviceCase {
	return []deviceCase{
		{"clean", router.DefaultImage("2.0"), nil, ear.TrustTierAffirming, ""},
		{"tampered kernel", attack.TamperKernel(router.DefaultImage("2.0")), nil, ear.TrustTierContraindicated, "vmlinuz-2.0"},
		{"rollback", router.DefaultImage("1.0"), nil, ear.TrustTierWarning, "rollback"},
		{"debug mode", attack.DebugMode(router.DefaultImage("2.0")), nil, ear.TrustTierContraindicated, "debug mode"},
		{"unknown binary", router.DefaultImage("2.0"), func(t *testing.T, d *device.Device) {
			if err := d.MeasureFile(context.Background(), "/tmp/.x/miner", []byte("not from any vendor")); err != nil {
				t.Fatal(err)
			}
		}, ear.TrustTierWarning, "/tmp/.x/miner"},
	}
}

func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	for _, c := range deviceCases() {
		t.Run(c.name, func(t *testing.T) {
			d := start(t, e, c.img)
			defer d.Close()
			if c.after != nil {
				c.after(t, d)
			}
			r := e.appraiseSSH(t, d)
			if r.Status != c.status || !strings.Contains(strings.Join(r.Reasons, "\n"), c.reason) {
				t.Errorf("status %v, reasons:\n%s\nwant %v with %q", r.Status, strings.Join(r.Reasons, "\n"), c.status, c.reason)
			}
			if len(r.EAR) == 0 {
				t.Error("no EAR")
			}
			// The next poll, with nothing new on the device, reuses the
			// boot log's appraisal and must find exactly the same.
			r2 := e.appraiseSSH(t, d)
			if r2.Status != r.Status || !slices.Equal(r2.Reasons, r.Reasons) {
				t.Errorf("second poll: status %v, reasons:\n%s\nwant the first poll's %v:\n%s", r2.Status, strings.Join(r2.Reasons, "\n"), r.Status, strings.Join(r.Reasons, "\n"))
			}
		})
	}
}

func TestRebootIsReattestation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	r1 := e.appraiseSSH(t, d)
	// A second poll fetches only new entries and still affirms.
	if err := d.MeasureFile(ctx, "/usr/bin/frr", router.DefaultImage("2.0").Packages[0].Files[0].Content); err != nil {
		t.Fatal(err)
	}
	r2 := e.appraiseSSH(t, d)
	if err := d.Reboot(ctx, router.DefaultImage("2.0")); err != nil {
		t.Fatal(err)
	}
	r3 := e.appraiseSSH(t, d)
	if r1.Status != ear.TrustTierAffirming || r2.Status != ear.TrustTierAffirming || r3.Status != ear.TrustTierAffirming {
		t.Errorf("statuses %v %v %v, want affirming; reasons %v %v %v", r1.Status, r2.Status, r3.Status, r1.Reasons, r2.Reasons, r3.Reasons)
	}
	if r2.Rebooted || !r3.Rebooted || r3.Clock.ResetCount != r1.Clock.ResetCount+1 {
		t.Errorf("rebooted flags %v %v, resetCount %d -> %d", r2.Rebooted, r3.Rebooted, r1.Clock.ResetCount, r3.Clock.ResetCount)
	}
}

// TestRIMChangeReappraisesBoot: the boot log's appraisal is kept between
// polls, but not past a change of the RIM set.
func TestRIMChangeReappraisesBoot(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	want := []ear.TrustTier{ear.TrustTierAffirming, ear.TrustTierContraindicated, ear.TrustTierAffirming}
	for i, rims := range []*rim.Index{e.index, rim.NewIndex(), e.index} {
		e.v.SetRIMs(rims)
		r := e.appraiseSSH(t, d)
		reasons := strings.Join(r.Reasons, "\n")
		if r.Status != want[i] {
			t.Errorf("poll %d: status %v, want %v; reasons:\n%s", i+1, r.Status, want[i], reasons)
		}
		if i == 1 && !strings.Contains(reasons, "PCR 4") {
			t.Errorf("poll %d with no RIMs: no boot finding; reasons:\n%s", i+1, reasons)
		}
	}
}

// TestKeptSession polls with Verifier.Reuse: one session serves every poll,
// and when the device drops it the next poll dials afresh; a target that
// resumes instead keeps none.
func TestKeptSession(t *testing.T) {
	e := newEnv(t)
	e.v.Reuse = true
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg := verifier.Target{Name: d.Serial, SSHAddr: d.SSHAddr, SSHUser: d.User, SSHKey: d.SSHClientKey}
	poll := func() {
		t.Helper()
		r, err := e.v.AppraiseTarget(ctx, tg)
		if err != nil {
			t.Fatalf("AppraiseTarget() = %v", err)
		}
		if r.Status != ear.TrustTierAffirming {
			t.Fatalf("status %v: %v", r.Status, r.Reasons)
		}
	}
	for range 3 {
		poll()
	}
	first := d.Server.Sessions()
	if len(first) != 1 {
		t.Fatalf("after 3 kept polls the device has sessions %v, want one", first)
	}
	if !d.Server.Kill(first[0]) {
		t.Fatal("Kill() = false")
	}
	poll()
	second := d.Server.Sessions()
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("after the session was killed: sessions %v (was %v), want one new one", second, first)
	}
	noSessions := func(after string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(d.Server.Sessions()) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s left sessions %v open", after, d.Server.Sessions())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A device polled too seldom to keep its session (Target.Resume,
	// poll.keep_sessions): the session it kept is closed, and each poll
	// closes its own.
	tg.Resume = true
	for range 2 {
		poll()
		noSessions("a poll with Resume")
	}
	tg.Resume = false
	poll()
	if n := len(d.Server.Sessions()); n != 1 {
		t.Fatalf("kept again: %d sessions, want one", n)
	}
	e.v.Close()
	noSessions("Close()")
}

// TestLongLogIsPaged grows the netequip_boot log past one log-retrieval
// page: the collector must follow the pages, or the replay falls short of
// the quoted PCR 10.
func TestLongLogIsPaged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	extra := netconf.LogPage + 50
	for i := range extra {
		if err := d.MeasureFile(ctx, fmt.Sprintf("/var/lib/plugins/p%05d", i), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	r := e.appraiseSSH(t, d)
	reasons := strings.Join(r.Reasons, "\n")
	// 100 files are named, the rest counted.
	if r.Status != ear.TrustTierWarning || !strings.Contains(reasons, fmt.Sprintf("and %d more", extra-100)) {
		t.Errorf("status %v, reasons:\n%.600s\nwant warning counting %d more files", r.Status, reasons, extra-100)
	}
	// RESTCONF pages the same way; SNMP walks the whole log.
	for _, via := range []string{"restconf", "snmp"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		t0 := time.Now()
		rr, err := verifier.New(e.v.Policy, key).AppraiseTarget(ctx, targets(d)[via])
		if err != nil {
			t.Fatalf("over %s: %v", via, err)
		}
		if rr.Status != r.Status || !slices.Equal(rr.Reasons, r.Reasons) {
			t.Errorf("over %s: %v, reasons:\n%.600s\nwant SSH's", via, rr.Status, strings.Join(rr.Reasons, "\n"))
		}
		t.Logf("%s: %d entries appraised in %v", via, extra, time.Since(t0))
	}
}
