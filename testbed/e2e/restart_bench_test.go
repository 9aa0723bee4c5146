package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/benchmem"
)

// BenchmarkRestart10k is a collector's start with 10,000 devices' state:
// open the store, read every device's latest result and verifier state,
// and restore them into a verifier (what the scheduler does before its
// first poll), against the baseline of reading the same rows with no
// decoding. It reports the heap each restored device holds and the size
// of its stored state. The state is a real one: a device appraised over
// NETCONF, its snapshot stored under 10,000 names.
//
// RIV_BENCH_DEVICES=N sets another count (issue 16 asks for 100,000).
func BenchmarkRestart10k(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("RIV_BENCH_DEVICES")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b)
	d := start(b, e, router.DefaultImage("2.0"))
	defer d.Close()
	c, err := netconf.DialSSH(context.Background(), d.SSHAddr, d.User, d.SSHClientKey)
	if err != nil {
		b.Fatal(err)
	}
	r, err := e.v.Appraise(context.Background(), d.Serial, c, c.HostKey)
	c.Close()
	if err != nil {
		b.Fatal(err)
	}
	snap, err := e.v.Snapshot(d.Serial)
	if err != nil || snap == nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "riv.db")
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 64 {
				ri := *r
				ri.Device = fmt.Sprintf("rtr-%06d", i)
				if _, err := st.Save(ctx, &ri, store.Saved{State: snap, Policy: "default"}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st.Close()
	b.Logf("stored verifier state: %d bytes per device", len(snap))

	b.Run("baseline-read", func(b *testing.B) {
		for b.Loop() {
			st, err := store.Open(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.States(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Latest(ctx); err != nil {
				b.Fatal(err)
			}
			st.Close()
		}
	})
	b.Run("restore", func(b *testing.B) {
		var perDevice float64
		var rss int64
		for b.Loop() {
			heap0, _ := benchmem.InUse()
			start := time.Now()
			st, err := store.Open(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			states, err := st.States(ctx)
			if err != nil {
				b.Fatal(err)
			}
			latest, err := st.Latest(ctx)
			if err != nil {
				b.Fatal(err)
			}
			v := verifier.New(e.v.Policy, e.v.Key)
			results := make(map[string]*verifier.Result, len(latest))
			for name, s := range states {
				if err := v.Restore(name, s); err != nil {
					b.Fatal(err)
				}
				rec := latest[name]
				results[name] = rec.Result()
			}
			st.Close()
			states, latest = nil, nil
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-restart")
			heap1, _ := benchmem.InUse()
			perDevice = float64(heap1-heap0) / float64(n)
			// The process's resident set with every device restored, the
			// load's garbage returned (as riv-collector serve does).
			debug.FreeOSMemory()
			rss = procRSS(b, os.Getpid())
			runtime.KeepAlive(v)
			runtime.KeepAlive(results)
		}
		b.ReportMetric(perDevice, "B-heap/device")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
	})
}
