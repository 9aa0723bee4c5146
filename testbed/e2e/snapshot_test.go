package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// fetches records the log retrievals of a session: type, from where, and
// how many entries came back.
type fetches struct {
	*netconf.Client
	got []string
}

func (f *fetches) note(t string, after *uint64, l *eventlog.Log) {
	from := "all"
	if after != nil {
		from = fmt.Sprintf("after %d", *after)
	}
	n := -1
	if l != nil {
		n = len(l.Events)
	}
	f.got = append(f.got, fmt.Sprintf("%s %s: %d", t, from, n))
}

func (f *fetches) Logs(ctx context.Context, t string, after *uint64) (*eventlog.Log, uint32, error) {
	l, up, err := f.Client.Logs(ctx, t, after)
	f.note(t, after, l)
	return l, up, err
}

func (f *fetches) Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, reqs []netconf.LogRequest) ([]netconf.Quote, []netconf.LogResult, error) {
	q, out, err := f.Client.Collect(ctx, nonce, sel, reqs)
	for k := range out {
		f.note(reqs[k].Type, reqs[k].After, out[k].Log)
	}
	return q, out, err
}

// appraiseRecorded appraises d with v and returns the result and the log
// retrievals of the poll.
func appraiseRecorded(t *testing.T, v *verifier.Verifier, d *device.Device) (*verifier.Result, []string) {
	t.Helper()
	return appraiseAs(t, v, d, d.Serial)
}

// appraiseAs is appraiseRecorded with the device under another name.
func appraiseAs(t *testing.T, v *verifier.Verifier, d *device.Device, name string) (*verifier.Result, []string) {
	t.Helper()
	c := dial(t, d)
	f := &fetches{Client: c}
	r, err := v.Appraise(context.Background(), name, f, c.HostKey)
	if err != nil {
		t.Fatalf("Appraise() = %v", err)
	}
	return r, f.got
}

// TestSnapshotResumesIncrementally: the state a collector stores with a
// result, restored in another verifier (a restarted collector), makes its
// first poll incremental — no log fetched whole — and keeps what the
// entries verified before showed, so a restart washes no finding away.
func TestSnapshotResumesIncrementally(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := router.DefaultImage("2.0")
	d := start(t, e, img)
	defer d.Close()
	if err := d.MeasureFile(ctx, "/usr/local/bin/implant", []byte("not from the vendor")); err != nil {
		t.Fatal(err)
	}
	r1, got := appraiseRecorded(t, e.v, d)
	if r1.Status != ear.TrustTierWarning || !strings.Contains(strings.Join(r1.Reasons, "\n"), "/usr/local/bin/implant") {
		t.Fatalf("first poll: %v %v, want a warning naming the unknown file", r1.Status, r1.Reasons)
	}
	for _, g := range got {
		if !strings.Contains(g, " all: ") {
			t.Errorf("first poll fetched %q, want every log whole", g)
		}
	}
	snap, err := e.v.Snapshot(d.Serial)
	if err != nil || snap == nil {
		t.Fatalf("Snapshot() = %d bytes, %v", len(snap), err)
	}
	if len(snap) > 4096 {
		t.Errorf("snapshot of %d bytes, want a compact one (no logs): %s", len(snap), snap)
	}

	v2 := verifier.New(e.v.Policy, e.v.Key)
	if err := v2.Restore(d.Serial, snap); err != nil {
		t.Fatalf("Restore() = %v", err)
	}
	if err := d.MeasureFile(ctx, "/usr/bin/frr", img.Packages[0].Files[0].Content); err != nil {
		t.Fatal(err)
	}
	r2, got := appraiseRecorded(t, v2, d)
	if r2.Status != ear.TrustTierWarning || !strings.Contains(strings.Join(r2.Reasons, "\n"), "/usr/local/bin/implant") {
		t.Errorf("after the restore: %v %v, want the finding kept", r2.Status, r2.Reasons)
	}
	if r2.Rebooted {
		t.Error("after the restore: rebooted")
	}
	want := map[string]bool{"bios": false, "netequip_boot": false}
	for _, g := range got {
		typ, _, _ := strings.Cut(g, " ")
		want[typ] = true
		if strings.Contains(g, " all: ") {
			t.Errorf("after the restore the poll fetched %q, want only what is new", g)
		}
		if typ == "netequip_boot" && !strings.HasSuffix(g, ": 1") {
			t.Errorf("after the restore: %q, want the one new entry", g)
		}
	}
	for typ, seen := range want {
		if !seen {
			t.Errorf("after the restore no %s log retrieval: %v", typ, got)
		}
	}

	// A damaged snapshot is refused and changes nothing.
	for _, bad := range []string{"", "{", `{"v":1,"keys":[],"tpms":{}}`, `{"v":9}`, strings.Replace(string(snap), `"v":1`, `"v":2`, 1)} {
		if err := v2.Restore(d.Serial, []byte(bad)); err == nil {
			t.Errorf("Restore(%q) = nil, want an error", bad)
		}
	}
}

// TestSnapshotOfAnotherDevice: a snapshot restored under a name now used
// by another device (none of its keys) carries nothing over: the device
// is appraised afresh, every log fetched whole.
func TestSnapshotOfAnotherDevice(t *testing.T) {
	e := newEnv(t)
	img := router.DefaultImage("2.0")
	a := start(t, e, img)
	if _, got := appraiseRecorded(t, e.v, a); len(got) == 0 {
		t.Fatal("no log retrievals")
	}
	snap, err := e.v.Snapshot(a.Serial)
	if err != nil || snap == nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	a.Close()
	b := start(t, e, img) // a TPM of its own: other keys
	defer b.Close()
	v2 := verifier.New(e.v.Policy, e.v.Key)
	if err := v2.Restore(a.Serial, snap); err != nil {
		t.Fatal(err)
	}
	r, got := appraiseAs(t, v2, b, a.Serial)
	if r.Status != ear.TrustTierAffirming || r.Rebooted {
		t.Errorf("the other device: %v (rebooted %v) %v", r.Status, r.Rebooted, r.Reasons)
	}
	for _, g := range got {
		if !strings.Contains(g, " all: ") {
			t.Errorf("the other device's poll fetched %q, want every log whole", g)
		}
	}
}

// TestSnapshotAcrossReboot: a device that rebooted while the collector
// was down is re-attested from the start of its logs.
func TestSnapshotAcrossReboot(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := router.DefaultImage("2.0")
	d := start(t, e, img)
	defer d.Close()
	r1, _ := appraiseRecorded(t, e.v, d)
	snap, err := e.v.Snapshot(d.Serial)
	if err != nil || snap == nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	if err := d.Reboot(ctx, img); err != nil {
		t.Fatal(err)
	}
	v2 := verifier.New(e.v.Policy, e.v.Key)
	if err := v2.Restore(d.Serial, snap); err != nil {
		t.Fatal(err)
	}
	r2, got := appraiseRecorded(t, v2, d)
	if !r2.Rebooted || r2.Clock.ResetCount != r1.Clock.ResetCount+1 || r2.Status != ear.TrustTierAffirming {
		t.Errorf("after a reboot: rebooted %v, resetCount %d -> %d, %v %v", r2.Rebooted, r1.Clock.ResetCount, r2.Clock.ResetCount, r2.Status, r2.Reasons)
	}
	whole := map[string]bool{}
	for _, g := range got {
		if typ, rest, _ := strings.Cut(g, " "); strings.HasPrefix(rest, "all: ") {
			whole[typ] = true
		}
	}
	if !whole["bios"] || !whole["netequip_boot"] {
		t.Errorf("after a reboot the poll fetched %v, want every log whole", got)
	}
}

// TestAttestationSetClaims: each EAR submod says what its verdict was
// reached on — policy set, log entries used, quoted PCR values, evidence
// format, evidence hash — and a later poll names only the new entries.
func TestAttestationSetClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := router.DefaultImage("2.0")
	d := start(t, e, img)
	defer d.Close()
	type set struct {
		MPS string `json:"mps"`
		LEM []struct {
			Log         string
			First, Last *int
			Count       int
			Kept        bool
			Digest      string
		} `json:"lem"`
		PCR      map[string]map[string]string `json:"pcr"`
		FMA      string                       `json:"fma"`
		Evidence string                       `json:"evidence"`
	}
	decode := func(r *verifier.Result) set {
		t.Helper()
		ae, ok := earSubmod(t, r.EAR)["ear.veraison.annotated-evidence"].(map[string]any)
		if !ok {
			t.Fatalf("no annotated evidence in the EAR")
		}
		b, _ := json.Marshal(ae["riv.attestation-set"])
		var s set
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	r1, _ := appraiseRecorded(t, e.v, d)
	s1 := decode(r1)
	if s1.MPS != e.v.Policy.Name || !strings.Contains(s1.FMA, "tpm20") || s1.Evidence != "sha-256:"+hex.EncodeToString(r1.Evidence) || len(r1.Evidence) != 32 {
		t.Errorf("set %+v, evidence %x", s1, r1.Evidence)
	}
	if len(s1.PCR["sha256"]) != 11 || len(s1.PCR["sha256"]["10"]) != 64 {
		t.Errorf("quoted PCRs %v, want PCRs 0-10 of sha256", s1.PCR)
	}
	logs := map[string]int{}
	for _, l := range s1.LEM {
		logs[l.Log] = l.Count
		if l.Count == 0 || l.Kept || !strings.HasPrefix(l.Digest, "sha-256:") || l.First == nil || *l.First != 0 && *l.First != 1 {
			t.Errorf("first poll, %s: %+v", l.Log, l)
		}
	}
	if logs["bios"] == 0 || logs["netequip_boot"] == 0 {
		t.Errorf("first poll's log entries: %+v", s1.LEM)
	}
	if err := d.MeasureFile(ctx, "/usr/bin/frr", img.Packages[0].Files[0].Content); err != nil {
		t.Fatal(err)
	}
	r2, _ := appraiseRecorded(t, e.v, d)
	s2 := decode(r2)
	for _, l := range s2.LEM {
		switch l.Log {
		case "bios":
			if !l.Kept || l.Count != 0 {
				t.Errorf("second poll, bios: %+v, want the kept appraisal", l)
			}
		case "netequip_boot":
			if l.Count != 1 || *l.First != *l.Last {
				t.Errorf("second poll, netequip_boot: %+v, want the one new entry", l)
			}
		}
	}
	if s2.PCR["sha256"]["10"] == s1.PCR["sha256"]["10"] || s2.Evidence == s1.Evidence {
		t.Error("second poll: PCR 10 or the evidence hash did not change with a new entry")
	}
}
