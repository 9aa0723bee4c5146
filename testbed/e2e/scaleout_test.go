package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/openriv/riv/internal/pgtest"
	"github.com/openriv/riv/internal/syncbuf"
)

// TestCollectorsShareFleetOnPostgres: three riv-collector serve share a
// simulated fleet of 30 routers on one PostgreSQL (a server of the
// test's own): each polls its third under leases; one is killed (-9)
// while its polls run; the other two take its devices over within two
// poll intervals, incrementally (from the state it kept), and no device
// is ever polled by two at once; every result the killed one reported
// kept is in the database; the API of any of them shows the whole fleet.
func TestCollectorsShareFleetOnPostgres(t *testing.T) {
	const n, tampered = 30, 2
	const interval = 3 * time.Second
	dir := t.TempDir()
	url := pgtest.NewDatabase(t)
	urlFile := filepath.Join(dir, "pg.url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info := startFleetsim(t, filepath.Join(dir, "fleet"), "--devices", fmt.Sprint(n), "--tamper", fmt.Sprint(tampered),
		"--grow", "2", "--every", "500ms", "--duration", "10m")
	p := newPKI(t, dir)
	var cs []*collector
	for i := range 3 {
		cdir := filepath.Join(dir, fmt.Sprintf("c%d", i))
		if err := os.MkdirAll(cdir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := fleetConfig(t, cdir, p, info, fmt.Sprintf("store: {postgres: {file: %s}, collector_id: c%d, lease_ttl: 3s}", urlFile, i))
		b, _ := os.ReadFile(cfg)
		if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "interval: 2s", "interval: 3s", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, startServe(t, cdir, cfg, p))
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	// Every device leased, the shares even.
	owners := waitOwners(t, db, n, 3)
	// Any collector's API shows the whole fleet and its verdicts.
	devs := cs[1].devices(t, n)
	checkSimVerdicts(t, devs, tampered)
	for name, d := range devs {
		if d.Collector == "" {
			t.Errorf("%s: no collector named", name)
		}
	}
	// The on-demand attestation of a device another collector holds is
	// refused with 409, naming why.
	for name, o := range owners {
		if o != "c1" {
			if code, b := cs[1].call(t, "POST", "/api/v1/devices/"+name+"/attest", cs[1].AdminToken); code != 409 {
				t.Errorf("attest %s (held by %s) through c1: %d %s", name, o, code, b)
			}
			break
		}
	}

	// Kill c0 at an arbitrary point of its rounds (its devices' polls
	// are spread over the interval).
	var victims []string
	for d, o := range owners {
		if o == "c0" {
			victims = append(victims, d)
		}
	}
	time.Sleep(2 * interval)
	cs[0].cmd.Process.Signal(syscall.SIGKILL)
	cs[0].cmd.Wait()
	killed := time.Now()
	t.Logf("killed c0 holding %d devices", len(victims))

	// Its devices are taken over within two intervals.
	deadline := killed.Add(2*interval + 2*time.Second)
	for {
		left := 0
		for _, d := range victims {
			var k int
			db.QueryRowContext(ctx, `SELECT COUNT(*) FROM results WHERE device = $1 AND collector != 'c0' AND started > $2`, d, killed.UnixNano()).Scan(&k)
			if k == 0 {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of c0's %d devices not polled by another collector %v after the kill", left, len(victims), time.Since(killed))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var slowest time.Duration
	for _, d := range victims {
		var first int64
		var ear string
		if err := db.QueryRowContext(ctx, `SELECT started, ear FROM results WHERE device = $1 AND collector != 'c0' AND started > $2 ORDER BY id LIMIT 1`,
			d, killed.UnixNano()).Scan(&first, &ear); err != nil {
			t.Fatal(err)
		}
		took := time.Unix(0, first).Sub(killed)
		slowest = max(slowest, took)
		if took > 2*interval {
			t.Errorf("%s: taken over %v after the kill, want within two intervals (%v)", d, took, 2*interval)
		}
		// The first poll after the takeover resumed from c0's state: the
		// boot log kept, not fetched again.
		if lem := logsUsed(t, ear); lem["bios"] != "kept" {
			t.Errorf("%s: the first poll after the takeover used bios %q, want kept (incremental from the stored state)", d, lem["bios"])
		}
	}
	t.Logf("c0's devices taken over within %v of the kill (interval %v)", slowest.Round(time.Millisecond), interval)
	time.Sleep(interval)

	// No device polled by two collectors at once: per device, each poll
	// of one collector ends before the next of another starts.
	rows, err := db.QueryContext(ctx, `SELECT device, collector, started, finished FROM results ORDER BY device, started`)
	if err != nil {
		t.Fatal(err)
	}
	type poll struct {
		by         string
		start, end int64
	}
	polls := map[string][]poll{}
	for rows.Next() {
		var d string
		var p poll
		if err := rows.Scan(&d, &p.by, &p.start, &p.end); err != nil {
			t.Fatal(err)
		}
		if p.start == 0 || p.end < p.start {
			t.Errorf("%s: a result of %s without its poll's times (%d, %d)", d, p.by, p.start, p.end)
		}
		polls[d] = append(polls[d], p)
	}
	rows.Close()
	handovers, results := 0, 0
	for d, ps := range polls {
		results += len(ps)
		sort.Slice(ps, func(i, j int) bool { return ps[i].start < ps[j].start })
		for i := 1; i < len(ps); i++ {
			if ps[i].by != ps[i-1].by {
				handovers++
				if ps[i].start < ps[i-1].end {
					t.Errorf("%s: polled by %s from %d and by %s until %d: at once", d, ps[i].by, ps[i].start, ps[i-1].by, ps[i-1].end)
				}
			}
		}
	}
	t.Logf("%d results of %d devices, %d handovers, none overlapping", results, len(polls), handovers)
	if handovers < len(victims) {
		t.Errorf("%d handovers in the history, want at least c0's %d devices", handovers, len(victims))
	}

	// No completed result lost: every appraisal c0 logged (after its
	// save returned) is in the database.
	logged := strings.Count(cs[0].cmd.Stderr.(*syncbuf.Buffer).String(), "msg=appraised")
	var kept int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM results WHERE collector = 'c0'`).Scan(&kept)
	t.Logf("c0 logged %d appraisals; %d of its results kept", logged, kept)
	if logged == 0 || kept < logged {
		t.Errorf("c0 logged %d appraisals, the database has %d of its results", logged, kept)
	}
	if strings.Contains(cs[1].cmd.Stderr.(*syncbuf.Buffer).String()+cs[2].cmd.Stderr.(*syncbuf.Buffer).String(), "store result") {
		t.Error("a surviving collector failed to store a result")
	}
	var stateBytes float64
	db.QueryRowContext(ctx, `SELECT AVG(LENGTH(state)) FROM device_state`).Scan(&stateBytes)
	t.Logf("kept verifier state: %.0f bytes per device", stateBytes)
	// The survivors share the fleet now.
	owners = waitOwners(t, db, n, 2)
	for _, o := range owners {
		if o == "c0" {
			t.Errorf("c0 still holds a lease: %v", owners)
			break
		}
	}
}

// waitOwners waits until every one of n devices is leased to one of k
// collectors, in even shares, and returns who holds each.
func waitOwners(t *testing.T, db *sql.DB, n, k int) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		rows, err := db.Query(`SELECT device, owner FROM leases WHERE expires > now()`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		by := map[string]int{}
		for rows.Next() {
			var d, o string
			rows.Scan(&d, &o)
			out[d] = o
			by[o]++
		}
		rows.Close()
		even := true
		for _, c := range by {
			even = even && (c == n/k || c == (n+k-1)/k)
		}
		if len(out) == n && len(by) == k && even {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases after 60 s: %d of %d devices held, shares %v, want %d even shares", len(out), n, by, k)
		}
	}
}
