package fleetsim

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/openriv/riv/internal/benchmem"
)

// BenchmarkStatePerDevice measures what the verifier holds per device
// between polls (issue 16: target ≤ 4 KiB): the heap after N devices
// were appraised once, their sessions closed, less the heap before, per
// device; and the size of the kept snapshot (the store's copy).
func BenchmarkStatePerDevice(b *testing.B) {
	const n = 300
	ctx := context.Background()
	f, err := New(Options{Files: 40})
	if err != nil {
		b.Fatal(err)
	}
	devs := make([]*Device, n)
	for i := range devs {
		if devs[i], err = f.Device(ctx, fmt.Sprintf("SIM-%05d", i)); err != nil {
			b.Fatal(err)
		}
	}
	// Each device answered once before: what the agent builds lazily
	// (its parsed state, its caches) is not counted as the collector's.
	warm := newVerifier(b, f)
	for _, d := range devs {
		appraise(b, warm, d)
	}
	warm = nil
	// Every allocation sampled: the device's share is small.
	writeProfile := benchmem.Profile(b, 1)
	for b.Loop() {
		v := newVerifier(b, f)
		appraise(b, v, devs[0]) // the RIM index and caches, shared
		before, _ := benchmem.InUse()
		snap := 0
		for _, d := range devs[1:] {
			appraise(b, v, d)
			s, _ := v.Snapshot(d.Serial)
			snap += len(s)
		}
		after, _ := benchmem.InUse()
		writeProfile() // what the state is made of, for the next reduction
		b.ReportMetric(float64(after-before)/float64(n-1), "B-heap/device")
		b.ReportMetric(float64(snap)/float64(n-1), "B-snapshot/device")
		runtime.KeepAlive(v)
	}
}
