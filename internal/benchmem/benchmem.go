// Package benchmem measures what a benchmark leaves on the heap, and
// writes a heap profile of it on request: RIV_BENCH_MEMPROFILE=FILE.
package benchmem

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// InUse returns the heap in use and the goroutine stacks, after two
// collections (the second frees what the first's finalizers released).
func InUse() (heap, stacks int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}

// Profile, with RIV_BENCH_MEMPROFILE set, samples one allocation per
// rate bytes until tb ends (1: every one) and returns what writes the
// heap profile to that file; without it, a function that does nothing.
func Profile(tb testing.TB, rate int) (write func()) {
	file := os.Getenv("RIV_BENCH_MEMPROFILE")
	if file == "" {
		return func() {}
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = rate
	tb.Cleanup(func() { runtime.MemProfileRate = old })
	return func() {
		w, err := os.Create(file)
		if err != nil {
			tb.Fatal(err)
		}
		defer w.Close()
		if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
			tb.Fatal(err)
		}
	}
}
