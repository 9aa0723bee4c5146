package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/benchmem"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/testbed/fleetsim"
)

// BenchmarkKeptSession weighs a kept NETCONF-TLS session against a
// resumed one (issue 16: an idle kept session ≤ 16 KiB, or none when
// resumption is cheaper): riv-fleetsim serves 300 devices in another
// process; the collector's verifier polls each once without keeping
// sessions (every later poll resumes TLS from the shared session cache),
// then once keeping them. Reported: the collector's heap and goroutine
// stacks per idle kept session (the heap with the sessions kept less the
// heap without, after GC), and the collector's CPU per poll for a kept
// session and for a resumed one (process CPU over 3 rounds of 300
// polls, each finding new log entries).
func BenchmarkKeptSession(b *testing.B) {
	const n = 300
	// The logs grow between rounds: every poll reads new entries, in
	// full-size TLS records (crypto/tls keeps a connection's record
	// buffer at the size of the largest record it read).
	_, info := runFleetsim(b, filepath.Join(b.TempDir(), "fleet"), "--devices", fmt.Sprint(n), "--grow", "10", "--every", "200ms", "--duration", "1h")
	v, targets := simVerifier(b, info, n)
	ctx := context.Background()
	round := func() {
		for _, t := range targets {
			r, err := v.AppraiseTarget(ctx, t)
			if err != nil || r.Status != ear.TrustTierAffirming {
				b.Fatalf("%s: %v %v", t.Name, err, r)
			}
		}
	}
	timed := func(rounds int) time.Duration {
		c0, _ := cpu()
		for range rounds {
			round()
		}
		c1, _ := cpu()
		return (c1 - c0) / time.Duration(rounds*n)
	}
	writeProfile := benchmem.Profile(b, 64)
	round() // full first polls; session tickets in the cache
	b.ResetTimer()
	resumed := timed(3)
	heap0, stack0 := benchmem.InUse()
	v.Reuse = true
	round() // these sessions stay open
	heap1, stack1 := benchmem.InUse()
	writeProfile()
	kept := timed(3)
	b.StopTimer()
	v.Close()
	b.ReportMetric(float64(heap1-heap0)/n, "B-heap/session")
	b.ReportMetric(float64(stack1-stack0)/n, "B-stack/session")
	b.ReportMetric(float64(kept.Microseconds()), "µs-cpu/poll-kept")
	b.ReportMetric(float64(resumed.Microseconds()), "µs-cpu/poll-resumed")
}

// simVerifier is a collector's verifier for a riv-fleetsim fleet, and
// the targets of its first n devices (one TLS session cache for all).
func simVerifier(tb testing.TB, info fleetsim.Info, n int) (*verifier.Verifier, []verifier.Target) {
	tb.Helper()
	pool := func(file string) *x509.CertPool {
		p := x509.NewCertPool()
		b, err := os.ReadFile(file)
		if err != nil || !p.AppendCertsFromPEM(b) {
			tb.Fatalf("%s: %v", file, err)
		}
		return p
	}
	idx, _, err := verifier.LoadRIMs(info.RIMs, pool(info.RIMSignerCA))
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(info.ClientCert, info.ClientKey)
	if err != nil {
		tb.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := verifier.New(verifier.Policy{Anchors: pool(info.ManufacturerCA), RIMs: idx, Banks: []alg.ID{alg.SHA256}}, key)
	first, err := netip.ParseAddrPort(info.First)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientSessionCache: tls.NewLRUClientSessionCache(n)}
	addr := first.Addr()
	var ts []verifier.Target
	for i := range n {
		ts = append(ts, verifier.Target{Name: fmt.Sprintf("sim-%06d", i), TLSAddr: netip.AddrPortFrom(addr, first.Port()).String(), TLS: cfg})
		addr = addr.Next()
	}
	return v, ts
}
