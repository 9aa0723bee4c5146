package fleetsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
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
	uefi      []floorEvent // extended events, SHA-256 digests
	templates [][]byte
	vals      [][]byte // the quoted PCR values, in selection order
}

type floorEvent struct {
	pcr    int
	digest []byte
}

func (f *floor) run() bool {
	var pcrs [24][32]byte
	var buf [64]byte
	for _, e := range f.uefi {
		copy(buf[:32], pcrs[e.pcr][:])
		copy(buf[32:], e.digest)
		pcrs[e.pcr] = sha256.Sum256(buf[:])
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
	t0 := cpuTime()
	defer func() { k.spent += cpuTime() - t0 }()
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
// real server in a process of its own (startBenchDevice), over pipes.
// Both are timed in this process's CPU time, garbage collection included;
// the EAR signature is left out and reported apart. x-floor is RIV's
// speed as a fraction of the floor's (targets: full ≥ 0.6, steady ≥
// 0.85). Run with -cpu 1.
// RIV_BENCH_CPUPROFILE=FILE profiles the loop (the floor is under
// floor.run, RIV's part under the verifier's and the client's frames).
func BenchmarkAppraisalFloor(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"full", "steady"} {
		b.Run(mode, func(b *testing.B) {
			dev := startBenchDevice(b)
			// The device's hello comes once it has written its files.
			c, err := netconf.Open(ctx, dev.conn)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			roots := x509.NewCertPool()
			roots.AddCert(dev.cert(b, "vendor-ca.pem"))
			idx, _, err := verifier.LoadRIMs(filepath.Join(dev.dir, "rims"), roots)
			if err != nil {
				b.Fatal(err)
			}
			anchors := x509.NewCertPool()
			anchors.AddCert(dev.cert(b, "manufacturer-ca.pem"))
			identity := dev.cert(b, "idevid.pem").PublicKey
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tk := &timedKey{Signer: key}
			v := verifier.New(verifier.Policy{Anchors: anchors, RIMs: idx, Banks: []alg.ID{alg.SHA256}}, tk)
			poll := func() *verifier.Result {
				r, err := v.Appraise(ctx, "SIM-BENCH", c, identity)
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
			op := "measure"
			if mode == "full" {
				op = "reboot"
			}
			var rivTime, floorTime, earTime, waited time.Duration
			stopProfile := startProfile(b)
			b.ResetTimer()
			for range b.N {
				// The device's part, in its process: reboot or measure,
				// and the floor's inputs (its quote and log entries).
				f := dev.do(b, op)
				if mode == "steady" && len(f.templates) != 100 || mode == "full" && (len(f.templates) != 1000 || len(f.uefi) < 100) {
					b.Fatalf("%s: floor of %d UEFI events and %d entries", mode, len(f.uefi), len(f.templates))
				}
				c0 := cpuTime()
				if !f.run() {
					b.Fatal("floor: the quote does not verify")
				}
				c1, ear0, w0 := cpuTime(), tk.spent, time.Now()
				r := poll()
				c2, w1 := cpuTime(), time.Now()
				if r.Status != first.Status || len(r.Reasons) != 1 || r.Rebooted != (mode == "full") {
					b.Fatalf("%s poll: %v rebooted=%v %q", mode, r.Status, r.Rebooted, r.Reasons)
				}
				et := tk.spent - ear0
				floorTime += c1 - c0
				rivTime += c2 - c1 - et
				earTime += et
				waited += w1.Sub(w0) - (c2 - c1)
			}
			b.StopTimer()
			stopProfile()
			n := float64(b.N)
			b.ReportMetric(float64(floorTime.Microseconds())/n, "floor-µs")
			b.ReportMetric(float64(rivTime.Microseconds())/n, "riv-µs")
			b.ReportMetric(float64(floorTime)/float64(rivTime), "x-floor")
			b.ReportMetric(n/rivTime.Seconds(), "riv/s")
			b.ReportMetric(float64(waited.Microseconds())/n, "device-µs")
			b.ReportMetric(float64(earTime.Microseconds())/n, "ear-µs")
		})
	}
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
