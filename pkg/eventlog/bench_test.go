package eventlog

import (
	"crypto"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// BenchmarkUEFIReplay100 parses and replays a real log of ~100 events
// (ubuntu-2104-no-dbx, 111 events, three banks) in the SHA-256 bank.
func BenchmarkUEFIReplay100(b *testing.B) {
	raw := testref.Read(b, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin")
	b.ReportAllocs()
	for b.Loop() {
		l, err := ParseTCG(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA256}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIMAReplayPerEntry replays the 1,650-entry CHARRA log (SHA-1
// template digests) into the SHA-256 bank: every entry re-hashes its
// template data and extends. Reports ns and allocations per entry.
func BenchmarkIMAReplayPerEntry(b *testing.B) {
	l, err := ParseIMA(testref.Read(b, "eventlogs/ima/charra/binary_runtime_measurements"))
	if err != nil {
		b.Fatal(err)
	}
	n := len(l.Events)
	opts := ReplayOptions{Banks: []alg.ID{alg.SHA256}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Replay(opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
}

// TestIMAReplayAllocsPerEntry pins the zero-allocation hot path: the
// allocations of a replay must not grow with the number of entries.
func TestIMAReplayAllocsPerEntry(t *testing.T) {
	l, err := ParseIMA(testref.Read(t, "eventlogs/ima/charra/binary_runtime_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	short := &Log{Format: l.Format, Banks: l.Banks, Events: l.Events[:10]}
	opts := ReplayOptions{Banks: []alg.ID{alg.SHA256}}
	full := testing.AllocsPerRun(20, func() { l.Replay(opts) })
	few := testing.AllocsPerRun(20, func() { short.Replay(opts) })
	if full != few {
		t.Errorf("replay of %d entries allocates %v times, of 10 entries %v: allocations per entry", len(l.Events), full, few)
	}
}

var compareLogs = []string{
	"eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin",
	"eventlogs/uefi/go-tpm-tools/cos-101-amd-sev.bin",
	"eventlogs/uefi/hirs/TpmLog.bin",
}

// BenchmarkCompareGoAttestation runs our parse+verify and go-attestation's
// ParseEventLog+Verify on the same logs and the same SHA-256 PCR values.
func BenchmarkCompareGoAttestation(b *testing.B) {
	for _, f := range compareLogs {
		raw := testref.Read(b, f)
		l, err := ParseTCG(raw)
		if err != nil {
			b.Fatal(err)
		}
		want, err := l.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA256}})
		if err != nil {
			b.Fatal(err)
		}
		var gaPCRs []attest.PCR
		for _, i := range want.Indexes(alg.SHA256) {
			gaPCRs = append(gaPCRs, attest.PCR{Index: i, Digest: want.Get(alg.SHA256, i), DigestAlg: crypto.SHA256})
		}
		name := f[len("eventlogs/uefi/"):]
		b.Run(name+"/riv", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := ParseTCG(raw)
				if err != nil {
					b.Fatal(err)
				}
				res, err := l.Verify(pcr.Values{alg.SHA256: want[alg.SHA256]})
				if err != nil || !res.OK() {
					b.Fatal(err, res)
				}
			}
		})
		b.Run(name+"/go-attestation", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				el, err := attest.ParseEventLog(raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := el.Verify(gaPCRs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
