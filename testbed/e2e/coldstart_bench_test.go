package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/collector/store"
)

// BenchmarkColdRestart is a `riv-collector serve` start with 100,000
// devices' state in its store (issue 16: serving within 10 s, the first
// round incremental). A simulated fleet (riv-fleetsim, 2,000 devices, in
// another process) is polled by a first collector; its state is then
// stored again under the names of the other 98,000 devices, which the
// configuration lists at addresses where nothing listens (their stored
// results are recent, so none is due during the benchmark). Reported:
// the time from the process's start to its API listening (collector.json
// written) and to its first answer from the restored fleet (GET
// /posture), the RSS then and once every reachable device was polled
// again, and how many of those first polls kept the boot log (bios
// "kept" in the EAR's attestation set: incremental), which must be all.
//
// RIV_BENCH_DEVICES and RIV_BENCH_REACHABLE change the counts;
// RIV_BENCH_DIR keeps the collector's files there.
func BenchmarkColdRestart(b *testing.B) {
	n, reach := envInt("RIV_BENCH_DEVICES", 100_000), envInt("RIV_BENCH_REACHABLE", 2000)
	dir := b.TempDir()
	if d := os.Getenv("RIV_BENCH_DIR"); d != "" {
		dir = d // kept, to start the collector again by hand
	}
	_, info := runFleetsim(b, filepath.Join(dir, "fleet"), "--devices", fmt.Sprint(reach), "--grow", "2", "--every", "2s", "--duration", "2h")
	p := newPKI(b, dir)
	cfg := fleetConfig(b, dir, p, info, "")
	raw, _ := os.ReadFile(cfg)
	// The reachable devices are polled every 5 s, the others hourly.
	text := strings.Replace(string(raw), "poll: {interval: 2s, timeout: 10s}", "poll: {interval: 1h, timeout: 30s, max_in_flight: 1000}", 1)
	text = strings.ReplaceAll(text, ", serial: SIM-", ", interval: 5s, serial: SIM-")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	c := startServe(b, dir, cfg, p)
	for deadline := time.Now().Add(2 * time.Minute); polls(b, c) < 2*reach; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("first collector: %d polls of %d devices", polls(b, c), reach)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()

	// The other devices' state: a real one's, under their names.
	ctx := context.Background()
	db := filepath.Join(dir, "data", "riv.db")
	st, err := store.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	snap, err := st.State(ctx, "sim-000000")
	if err != nil || snap == nil {
		b.Fatalf("sim-000000's state: %v", err)
	}
	rec, ok, err := st.Last(ctx, "sim-000000")
	if err != nil || !ok {
		b.Fatalf("sim-000000's result: %v", err)
	}
	r := rec.Result()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := reach + g; i < n; i += 64 {
				ri := *r
				ri.Device, ri.Time = fmt.Sprintf("ghost-%06d", i), time.Now()
				if _, err := st.Save(ctx, &ri, store.Saved{State: snap, Policy: "default", Started: ri.Time, Finished: ri.Time}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st.Close()
	var inv strings.Builder
	inv.WriteString(text)
	addr := netip.MustParseAddr("127.3.0.1")
	for i := reach; i < n; i++ {
		fmt.Fprintf(&inv, "  - {name: ghost-%06d, address: \"%v:6513\", transport: tls, client_cert: %s, client_key: {file: %s}}\n", i, addr, info.ClientCert, info.ClientKey)
		addr = addr.Next()
	}
	if err := os.WriteFile(cfg, []byte(inv.String()), 0o600); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	t0 := time.Now()
	c = startServe(b, dir, cfg, p)
	listening := time.Since(t0)
	// Serving: the API answers from the restored fleet (it waits while
	// the scheduler restores the store's state).
	if code, body := c.call(b, "GET", "/api/v1/posture", c.ReadonlyToken); code != 200 {
		b.Fatalf("GET /posture: %d %s", code, body)
	}
	serving := time.Since(t0)
	b.StopTimer()
	rssServing := procRSS(b, c.cmd.Process.Pid)
	// The round is over when every reachable device has a result since
	// the restart (a count of polls is not: a device polled early is
	// polled again, its interval being shorter than the round). The
	// store is the collector's alone while it runs: ask the API, once
	// the polls add up, for the devices not seen yet.
	for deadline := time.Now().Add(2 * time.Minute); polls(b, c) < reach; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("after the restart: %d polls of %d devices", polls(b, c), reach)
		}
	}
	left := map[string]bool{}
	for i := range reach {
		left[fmt.Sprintf("sim-%06d", i)] = true
	}
	for deadline := time.Now().Add(2 * time.Minute); len(left) > 0; time.Sleep(200 * time.Millisecond) {
		for name := range left {
			var d struct {
				Appraised time.Time `json:"appraised"`
			}
			if code, body := c.call(b, "GET", "/api/v1/devices/"+name, c.ReadonlyToken); code != 200 || json.Unmarshal(body, &d) != nil {
				b.Fatalf("GET /devices/%s: %d %s", name, code, body)
			}
			if !d.Appraised.Before(t0) {
				delete(left, name)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("after the restart: %d of %d devices not polled in 2 minutes", len(left), reach)
		}
	}
	firstRound := time.Since(t0)
	rssPolled := procRSS(b, c.cmd.Process.Pid)
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()

	sdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer sdb.Close()
	rows, err := sdb.Query(`SELECT device, ear FROM results WHERE started >= ? AND device LIKE 'sim-%' ORDER BY id`, t0.UnixNano())
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	first := map[string]bool{} // device: its first poll kept the boot log
	for rows.Next() {
		var dev, tok string
		if err := rows.Scan(&dev, &tok); err != nil {
			b.Fatal(err)
		}
		if _, seen := first[dev]; !seen {
			first[dev] = logsUsed(b, tok)["bios"] == "kept"
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	incremental := 0
	for _, kept := range first {
		if kept {
			incremental++
		}
	}
	if len(first) != reach || incremental != reach {
		b.Errorf("after the restart %d of %d devices were polled; %d of those first polls were incremental", len(first), reach, incremental)
	}
	b.ReportMetric(listening.Seconds(), "s-to-listen")
	b.ReportMetric(serving.Seconds(), "s-to-serve")
	b.ReportMetric(firstRound.Seconds(), "s-first-round")
	b.ReportMetric(float64(rssServing)/(1<<20), "MiB-rss-serving")
	b.ReportMetric(float64(rssPolled)/(1<<20), "MiB-rss-polled")
	b.ReportMetric(float64(rssServing)/float64(n), "B-rss/device")
	b.ReportMetric(float64(incremental)/float64(reach), "incremental")
}
