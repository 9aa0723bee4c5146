package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/testbed/device"
	"github.com/openriv/riv/testbed/router"
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
