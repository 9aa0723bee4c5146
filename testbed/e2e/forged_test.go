package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// reportIn rewrites a runtime log as a device reporting its template
// digests in bank tmpl would serve it; forge, when set, changes an entry
// before its digest is chosen (it returns the digest to report).
func reportIn(tmpl alg.ID, forge func(e *eventlog.Event) []byte) func(attester.LogType, *eventlog.Log) *eventlog.Log {
	return func(t attester.LogType, l *eventlog.Log) *eventlog.Log {
		if t == attester.LogBIOS {
			return l
		}
		l.Banks = []alg.ID{tmpl}
		for i := range l.Events {
			e := &l.Events[i]
			honest := eventlog.IMAEntryFor(e.PCR, e.IMA.FileHashAlg, e.IMA.FileHash, e.IMA.FileName, e.IMA.Sig, []alg.ID{tmpl})
			honest.Seq = e.Seq
			d := honest.Digest(tmpl)
			if forge != nil {
				if fd := forge(&honest); fd != nil {
					d = fd
				}
			}
			honest.Digests = []eventlog.Digest{{Alg: tmpl, Value: d}}
			*e = honest
		}
		return l
	}
}

func appraiseIn(t *testing.T, e *env, d *device.Device, bank alg.ID) *verifier.Result {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.v = verifier.New(verifier.Policy{Anchors: e.v.Policy.Anchors, RIMs: e.index, Banks: []alg.ID{bank}}, key)
	return e.appraiseSSH(t, d)
}

// TestForgedRuntimeEntry is item A1: a device measures /usr/bin/backdoor
// into PCR 10, then reports that entry under the name and file hash of a
// signed file, keeping the backdoor's template digest so that the
// reported digests still extend to PCR 10 — in every log type, every
// template-hash algorithm and every quoted bank, including the case where
// the two are the same bank. The verifier re-derives each template from
// the reported fields and must never affirm. Honest devices reporting in
// the same algorithms must still be affirmed (the control), and a device
// whose reported digest contradicts honest data is named.
func TestForgedRuntimeEntry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	signed := router.DefaultImage("2.0").Packages[0].Files[0] // a file a signed RIM lists
	backdoor := []byte("a backdoor no vendor signed")
	for _, logType := range []attester.LogType{attester.LogNetequip, attester.LogIMA} {
		for _, tmpl := range []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384} {
			for _, bank := range []alg.ID{alg.SHA256, alg.SHA384} {
				name := fmt.Sprintf("%s/%v template hashes/%v quote", logType, tmpl, bank)
				cases := []struct {
					what   string
					forge  func(*eventlog.Event) []byte
					status ear.TrustTier
					reason string
				}{
					{"honest", nil, ear.TrustTierAffirming, ""},
					{"backdoor reported as a signed file", func(ev *eventlog.Event) []byte {
						if ev.IMA.FileName != "/usr/bin/backdoor" {
							return nil
						}
						real := ev.Digest(tmpl)
						*ev = eventlog.IMAEntryFor(ev.PCR, alg.SHA256, alg.SHA256.Sum(signed.Content), signed.Path, nil, []alg.ID{tmpl})
						return real
					}, ear.TrustTierContraindicated, "do not replay"},
					{"true data, false template digest", func(ev *eventlog.Event) []byte {
						if ev.IMA.FileName != "/usr/bin/backdoor" {
							return nil
						}
						return bytes.Repeat([]byte{0x5a}, tmpl.Size())
					}, ear.TrustTierContraindicated, "template digest is not the hash of their data"},
				}
				for _, c := range cases {
					t.Run(name+"/"+c.what, func(t *testing.T) {
						d := startWithOpts(t, e, device.Options{Image: router.DefaultImage("2.0"), RuntimeLog: logType, Lie: reportIn(tmpl, c.forge)})
						defer d.Close()
						content := signed.Content
						if c.forge != nil {
							content = backdoor
						}
						if err := d.MeasureFile(ctx, "/usr/bin/backdoor", content); err != nil {
							t.Fatal(err)
						}
						if c.forge == nil {
							// The control measures a signed file under its own name.
							if err := d.MeasureFile(ctx, signed.Path, signed.Content); err != nil {
								t.Fatal(err)
							}
						}
						r := appraiseIn(t, e, d, bank)
						reasons := strings.Join(r.Reasons, "\n")
						if c.forge == nil {
							// /usr/bin/backdoor has the signed content: unknown name, known hash.
							if r.Status != c.status {
								t.Fatalf("status %v, want %v; reasons:\n%s", r.Status, c.status, reasons)
							}
							return
						}
						if r.Status != c.status || !strings.Contains(reasons, c.reason) {
							t.Errorf("status %v, reasons:\n%s\nwant %v with %q", r.Status, reasons, c.status, c.reason)
						}
					})
				}
			}
		}
	}
}

// TestForgedBootEventData: the bios log arrives with event data that its
// digest does not cover — a Secure Boot variable reported as enabled on a
// device that booted with it off, and an EFI action text changed. The
// digests still replay to the quote; CheckDigests on what arrived over the
// wire names the lie.
func TestForgedBootEventData(t *testing.T) {
	e := newEnv(t)
	off := router.DefaultImage("2.0").Clone()
	off.SecureBoot = false
	on := router.DefaultImage("2.0")
	lie := func(t attester.LogType, l *eventlog.Log) *eventlog.Log {
		if t != attester.LogBIOS {
			return l
		}
		for i := range l.Events {
			ev := &l.Events[i]
			switch eventlog.EventType(ev.Type) {
			case eventlog.EvEFIVariableDriverConfig:
				if v, err := eventlog.ParseUEFIVariable(ev.Data); err == nil && v.Name == "SecureBoot" {
					ev.Data = append(bytes.Clone(ev.Data[:len(ev.Data)-1]), 1)
				}
			case eventlog.EvEFIAction:
				if bytes.HasPrefix(ev.Data, []byte("Calling EFI Application")) {
					ev.Data = []byte("Calling EFI Application from Boot Option (verified)")
				}
			}
		}
		return l
	}
	for _, c := range []struct {
		name string
		img  *router.Image
	}{{"secure boot off reported on", off}, {"action text changed", on}} {
		t.Run(c.name, func(t *testing.T) {
			d := startWithOpts(t, e, device.Options{Image: c.img, Lie: lie})
			defer d.Close()
			r := e.appraiseSSH(t, d)
			reasons := strings.Join(r.Reasons, "\n")
			if r.Status != ear.TrustTierContraindicated || !strings.Contains(reasons, "lies about what was measured") {
				t.Errorf("status %v, reasons:\n%s\nwant contraindicated naming the lying event", r.Status, reasons)
			}
		})
	}
}

// coswidOnly is the vendor's RIMs without its PCR CoRIMs and base/support
// RIMs: only the per-file CoSWIDs vouch for the boot, so what the verifier
// does with an event type it does not look up decides the verdict.
func coswidOnly(t *testing.T, e *env) *verifier.Verifier {
	t.Helper()
	dir := t.TempDir()
	copyState(t, e.rims, dir)
	for _, pat := range []string{"pcrs-*.corim", "base-*.cose", "support-*.rimel"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range m {
			os.Remove(f)
		}
	}
	idx, _, err := verifier.LoadRIMs(dir, e.vend.Roots())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return verifier.New(verifier.Policy{Anchors: e.v.Policy.Anchors, RIMs: idx, Banks: []alg.ID{alg.SHA256}}, key)
}

// rewriteBoot has the device report its bios log with edit applied to
// every event in PCR pcr (the TPM still holds what was measured).
func rewriteBoot(pcrIndex int, edit func(e *eventlog.Event)) func(attester.LogType, *eventlog.Log) *eventlog.Log {
	return func(t attester.LogType, l *eventlog.Log) *eventlog.Log {
		if t != attester.LogBIOS {
			return l
		}
		for i := range l.Events {
			if l.Events[i].PCR == pcrIndex {
				edit(&l.Events[i])
			}
		}
		return l
	}
}

// TestRelabeledBootEvent: the TPM does not extend an event's type, so a
// device can report its tampered kernel as EV_POST_CODE, or as a type
// nobody defined. The verifier decides boot events by PCR and digest: a
// digest no signed RIM lists is contraindicated whatever it is called.
func TestRelabeledBootEvent(t *testing.T) {
	e := newEnv(t)
	for _, typ := range []eventlog.EventType{eventlog.EvPostCode, eventlog.EvEFIRuntimeServicesDriver, 0x12345} {
		t.Run(typ.String(), func(t *testing.T) {
			img := attack.TamperKernel(router.DefaultImage("2.0"))
			d := startWithOpts(t, e, device.Options{Image: img, Lie: rewriteBoot(4, func(ev *eventlog.Event) {
				if eventlog.EventType(ev.Type) == eventlog.EvEFIBootServicesApp {
					ev.Type = uint32(typ)
				}
			})})
			defer d.Close()
			for name, v := range map[string]*verifier.Verifier{"all RIMs": e.v, "CoSWIDs only": coswidOnly(t, e)} {
				e.v = v
				r := e.appraiseSSH(t, d)
				if r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), "PCR 4 event") {
					t.Errorf("%s: %v, executables %v: %v", name, r.Status, r.Vector.Executables, r.Reasons)
				}
			}
		})
	}
}

// TestUnboundBootData: firmware measured debug=on into PCR 1 and the device
// reports the event's data as debug=off; a Secure Boot variable appended to
// PCR 7 after its separator (anyone who can extend PCR 7 from the OS can)
// does not turn Secure Boot on. Neither may be affirmed, even with only
// CoSWIDs to vouch for the boot.
func TestUnboundBootData(t *testing.T) {
	e := newEnv(t)
	img := attack.DebugMode(router.DefaultImage("2.0"))
	d := startWithOpts(t, e, device.Options{Image: img, Lie: rewriteBoot(1, func(ev *eventlog.Event) {
		if eventlog.EventType(ev.Type) == eventlog.EvPlatformConfigFlags {
			ev.Data = []byte("debug=off")
		}
	})})
	defer d.Close()
	for name, v := range map[string]*verifier.Verifier{"all RIMs": e.v, "CoSWIDs only": coswidOnly(t, e)} {
		e.v = v
		r := e.appraiseSSH(t, d)
		if r.Status == ear.TrustTierAffirming || r.Vector.Configuration == ear.ApprovedConfigClaim {
			t.Errorf("%s: debug=on reported as debug=off: %v, configuration %v: %v", name, r.Status, r.Vector.Configuration, r.Reasons)
		}
	}

	// Secure Boot: a log that turns it on after the separator.
	sb := func(on byte) eventlog.Event {
		data := append(append([]byte{}, efiGlobalGUID[:]...), 10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
		for _, c := range "SecureBoot" {
			data = append(data, byte(c), 0)
		}
		data = append(data, on)
		return eventlog.Event{PCR: 7, Type: uint32(eventlog.EvEFIVariableDriverConfig), Data: data}
	}
	sep := eventlog.Event{PCR: 7, Type: uint32(eventlog.EvSeparator), Data: []byte{0, 0, 0, 0}}
	for name, events := range map[string][]eventlog.Event{
		"after the separator": {sb(0), sep, sb(1)},
		"twice, differently":  {sb(1), sb(0), sep},
	} {
		st := (&eventlog.Log{Format: eventlog.FormatTCG, Events: events}).SecureBoot()
		if st.Enabled || len(st.Conflicts) == 0 {
			t.Errorf("SecureBoot set %s: enabled %v, conflicts %v", name, st.Enabled, st.Conflicts)
		}
	}
	if st := (&eventlog.Log{Format: eventlog.FormatTCG, Events: []eventlog.Event{sb(1), sep}}).SecureBoot(); !st.Enabled {
		t.Errorf("SecureBoot=1 before the separator: not enabled (%v)", st.Problems)
	}
}

// efiGlobalGUID is EFI_GLOBAL_VARIABLE as UEFI_VARIABLE_DATA stores it.
var efiGlobalGUID = [16]byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}

// TestRuntimeEntriesOutsidePCR10: a NOS that measured nothing (PCR 10 at
// its reset value) reports signed files as measured into PCR 11, which the
// quote does not cover. Unbound entries must not earn "approved at run
// time".
func TestRuntimeEntriesOutsidePCR10(t *testing.T) {
	e := newEnv(t)
	img := router.DefaultImage("2.0")
	img.RuntimeOff = true
	d := startWithOpts(t, e, device.Options{Image: img, Lie: func(lt attester.LogType, l *eventlog.Log) *eventlog.Log {
		if lt == attester.LogBIOS {
			return l
		}
		fake := &eventlog.Log{Format: eventlog.FormatIMA, Banks: []alg.ID{alg.SHA256}}
		for _, f := range img.Packages[0].Files {
			ev := eventlog.IMAEntryFor(11, alg.SHA256, alg.SHA256.Sum(f.Content), f.Path, nil, []alg.ID{alg.SHA256})
			ev.Seq = len(fake.Events)
			fake.Events = append(fake.Events, ev)
		}
		return fake
	}})
	defer d.Close()
	r := e.appraiseSSH(t, d)
	if r.Vector.Executables == ear.ApprovedRuntimeClaim || r.Status == ear.TrustTierAffirming || !strings.Contains(strings.Join(r.Reasons, "\n"), "is in PCR 11") {
		t.Errorf("entries in PCR 11: %v, executables %v: %v", r.Status, r.Vector.Executables, r.Reasons)
	}
}
