package fleetsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// floor is the crypto and hash work no appraisal of the same evidence
// can avoid, done with the standard library's primitives on the bytes
// the device sent: one signature verification of the quote, one SHA-256
// extend per UEFI event, one SHA-256 of each IMA entry's template data and
// its extend, and the quote's PCR digest.
type floor struct {
	pub       *ecdsa.PublicKey
	attest    []byte
	sig       *quote.Signature
	uefi      []eventlog.Event // extended events, SHA-256 digests
	templates [][]byte
	vals      [][]byte // the quoted PCR values, in selection order
}

func (f *floor) run() bool {
	var pcrs [24][32]byte
	var buf [64]byte
	for i := range f.uefi {
		e := &f.uefi[i]
		copy(buf[:32], pcrs[e.PCR][:])
		copy(buf[32:], e.Digest(alg.SHA256))
		pcrs[e.PCR] = sha256.Sum256(buf[:])
	}
	for _, t := range f.templates {
		d := sha256.Sum256(t)
		copy(buf[:32], pcrs[10][:])
		copy(buf[32:], d[:])
		pcrs[10] = sha256.Sum256(buf[:])
	}
	h := sha256.New()
	for _, v := range f.vals {
		h.Write(v)
	}
	floorSink = h.Sum(floorSink[:0])
	floorSink = append(floorSink, pcrs[10][:]...)
	md := sha256.Sum256(f.attest)
	return ecdsa.Verify(f.pub, md[:], f.sig.R, f.sig.S)
}

// floorSink keeps the floor's results live.
var floorSink []byte

// timedKey is the collector's EAR key, with the time spent signing kept
// apart (the floor has no result to sign).
type timedKey struct {
	crypto.Signer
	spent time.Duration
}

func (k *timedKey) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	t0 := time.Now()
	defer func() { k.spent += time.Since(t0) }()
	return k.Signer.Sign(r, d, o)
}

// BenchmarkAppraisalFloor compares RIV's appraisal with the floor (see
// floor) on the same evidence, interleaved call by call so that noise hits
// both alike: "full" is a re-attestation after a reboot (a 111-event UEFI
// log in three banks, 1,000 netequip_boot entries), "steady" a poll that
// finds 100 new entries. RIV's part runs the collector's real path — the
// NETCONF client's framing and XML decoding of the agent's replies, quote
// verification, replay of every entry from its data, the SHA-1 template
// digests checked, reference values and policy — against the agent's
// real server over an in-process stream; the device's time (server,
// software TPM) and the EAR signature are left out and reported apart.
// x-floor is RIV's speed as a fraction of the floor's (targets: full
// ≥ 0.6, steady ≥ 0.85). Run with -cpu 1. The device's garbage is
// collected before each poll, in the device's time, so that the poll's
// share of the collector's work is its own garbage's.
// RIV_BENCH_CPUPROFILE=FILE profiles the loop (RIV's part is under the
// verifier's and the client's frames).
func BenchmarkAppraisalFloor(b *testing.B) {
	ctx := context.Background()
	fl, err := New(Options{Files: 1000 - 8, Firmware: testref.Read(b, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin")})
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"full", "steady"} {
		b.Run(mode, func(b *testing.B) {
			idx, err := fl.Index(filepath.Join(b.TempDir(), "rims"))
			if err != nil {
				b.Fatal(err)
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tk := &timedKey{Signer: key}
			v := verifier.New(verifier.Policy{Anchors: fl.Anchors(), RIMs: idx, Banks: []alg.ID{alg.SHA256}}, tk)
			d, err := fl.Device(ctx, "SIM-BENCH")
			if err != nil {
				b.Fatal(err)
			}
			lb := d.Loopback()
			c, err := netconf.Open(ctx, lb)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			poll := func() *verifier.Result {
				r, err := v.Appraise(ctx, d.Serial, c, d.IdentityKey())
				if err != nil {
					b.Fatal(err)
				}
				return r
			}
			// The captured firmware booted without Secure Boot: a warning,
			// the one reason of every poll.
			first := poll()
			if first.Status == ear.TrustTierContraindicated || len(first.Reasons) != 1 {
				b.Fatalf("device %v: %q", first.Status, first.Reasons)
			}
			iak := d.Attester.Config().Certificates[0].Key
			sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
			nonce := make([]byte, 32)
			var rivTime, floorTime, devTime, earTime time.Duration
			rt0, _ := d.Logs.Log(ctx, attester.LogNetequip)
			seen := len(rt0.Log.Events)
			stopProfile := startProfile(b)
			b.ResetTimer()
			for range b.N {
				// The device's part: reboot or measure, and the floor's
				// inputs (its quote and log entries).
				if mode == "full" {
					err = d.Reboot(ctx)
				} else {
					err = d.Measure(ctx, 100)
				}
				if err != nil {
					b.Fatal(err)
				}
				f := floorOf(b, d, iak.Public.Key.(*ecdsa.PublicKey), nonce, sel, mode == "full", &seen)
				if mode == "steady" && len(f.templates) != 100 || mode == "full" && (len(f.templates) != 1000 || len(f.uefi) < 100) {
					b.Fatalf("%s: floor of %d UEFI events and %d entries", mode, len(f.uefi), len(f.templates))
				}
				// The device's garbage is collected on its time: in a
				// collector, the heap holds the collector's alone.
				runtime.GC()
				t0 := time.Now()
				if !f.run() {
					b.Fatal("floor: the quote does not verify")
				}
				t1 := time.Now()
				dev0, ear0 := lb.DeviceTime(), tk.spent
				r := poll()
				t2 := time.Now()
				dt, et := lb.DeviceTime()-dev0, tk.spent-ear0
				if r.Status != first.Status || len(r.Reasons) != 1 || r.Rebooted != (mode == "full") {
					b.Fatalf("%s poll: %v rebooted=%v %q", mode, r.Status, r.Rebooted, r.Reasons)
				}
				floorTime += t1.Sub(t0)
				rivTime += t2.Sub(t1) - dt - et
				devTime += dt
				earTime += et
			}
			b.StopTimer()
			stopProfile()
			n := float64(b.N)
			b.ReportMetric(float64(floorTime.Microseconds())/n, "floor-µs")
			b.ReportMetric(float64(rivTime.Microseconds())/n, "riv-µs")
			b.ReportMetric(float64(floorTime)/float64(rivTime), "x-floor")
			b.ReportMetric(n/rivTime.Seconds(), "riv/s")
			b.ReportMetric(float64(devTime.Microseconds())/n, "device-µs")
			b.ReportMetric(float64(earTime.Microseconds())/n, "ear-µs")
		})
	}
}

// floorOf takes a quote from d's TPM and its current logs: the floor's
// evidence for this poll (all of it after a reboot, else the entries new
// since the last call).
func floorOf(b *testing.B, d *Device, pub *ecdsa.PublicKey, nonce []byte, sel []pcr.Selection, full bool, seen *int) *floor {
	ctx := context.Background()
	iak := d.Attester.Config().Certificates[0].Key
	a, s, err := d.TPM.Quote(ctx, iak, nonce, sel)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := quote.ParseSignature(s)
	if err != nil {
		b.Fatal(err)
	}
	vals, _ := d.TPM.ReadPCRs(ctx, sel)
	f := &floor{pub: pub, attest: a, sig: sig}
	for _, i := range sel[0].PCRs {
		f.vals = append(f.vals, vals.Get(alg.SHA256, i))
	}
	rt, _ := d.Logs.Log(ctx, attester.LogNetequip)
	if full {
		bios, _ := d.Logs.Log(ctx, attester.LogBIOS)
		for _, e := range bios.Log.Events {
			if eventlog.EventType(e.Type) != eventlog.EvNoAction {
				f.uefi = append(f.uefi, e)
			}
		}
		*seen = 0
	}
	for _, e := range rt.Log.Events[*seen:] {
		f.templates = append(f.templates, e.Data)
	}
	*seen = len(rt.Log.Events)
	return f
}

func startProfile(b *testing.B) func() {
	file := os.Getenv("RIV_BENCH_CPUPROFILE")
	if file == "" {
		return func() {}
	}
	out, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); out.Close() }
}
