package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/pgtest"
	"github.com/openriv/riv/pkg/quote"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// eachBackend runs a test on SQLite and on PostgreSQL (a server of the
// test's own): open opens its database, again each call.
func eachBackend(t *testing.T, test func(t *testing.T, open func() (*Store, error))) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "riv.db")
		test(t, func() (*Store, error) { return Open(context.Background(), path) })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		test(t, func() (*Store, error) { return OpenPostgres(context.Background(), url, Options{}) })
	})
}

// openPostgres opens a new database of the test's PostgreSQL, closed
// when the test ends.
func openPostgres(tb testing.TB) *Store {
	tb.Helper()
	s, err := OpenPostgres(context.Background(), pgtest.NewDatabase(tb), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestHistoryAndReboot(t *testing.T) { eachBackend(t, testHistoryAndReboot) }

func testHistoryAndReboot(t *testing.T, open func() (*Store, error)) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	res := func(reset uint32, rebooted bool, status ear.TrustTier, reasons ...string) *verifier.Result {
		r := &verifier.Result{Device: "rtr-1", Serial: "RTR-1", Status: status, Reasons: reasons, Rebooted: rebooted,
			Clock: quote.ClockInfo{ResetCount: reset}, EAR: []byte("a.b.c"), Time: now}
		r.Vector.Executables = ear.ApprovedBootClaim
		now = now.Add(time.Minute)
		return r
	}
	for _, r := range []*verifier.Result{
		res(5, false, ear.TrustTierAffirming),
		res(5, false, ear.TrustTierWarning, "file-system: /tmp/x not in any signed RIM"),
		res(6, true, ear.TrustTierAffirming),
	} {
		if _, err := s.Save(ctx, r, Saved{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Reopen: the history survived.
	s, err = open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.History(ctx, "rtr-1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 {
		t.Fatalf("%d results, want 3", len(h))
	}
	if h[0].Superseded != "" || !h[0].Rebooted || h[0].ResetCount != 6 {
		t.Errorf("latest = %+v", h[0])
	}
	for _, old := range h[1:] {
		if old.Superseded == "" {
			t.Errorf("result %d before the reboot not superseded", old.ID)
		}
	}
	if h[1].Status != "warning" || len(h[1].Reasons) != 1 || h[1].Vector.Executables != ear.ApprovedBootClaim {
		t.Errorf("round trip lost data: %+v", h[1])
	}
}

// A database made by the first schema (before migrations were counted)
// migrates in place and keeps its results; the verifier's state, the
// latest results and API devices round-trip; a database from a newer
// collector is refused.
func TestMigrationsAndState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "riv.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(migrations[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO results (device, serial, at, status, vector, reasons, reset_count, restart_count, rebooted, ear)
		VALUES ('old', 'OLD', 1, 'affirming', '{}', '[]', 1, 0, 0, 'x.y.z')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(version-1 database) = %v", err)
	}
	now := time.Now()
	r := &verifier.Result{Device: "rtr", Serial: "RTR", Status: ear.TrustTierWarning, Time: now, Evidence: []byte{1, 2},
		TPMs: []verifier.TPMResult{{Name: "lc1", Status: ear.TrustTierWarning}}}
	if _, err := s.Save(ctx, r, Saved{State: []byte(`{"v":1}`), Policy: "strict"}); err != nil {
		t.Fatal(err)
	}
	r2 := *r
	r2.Time, r2.Status = now.Add(time.Minute), ear.TrustTierAffirming
	if _, err := s.Save(ctx, &r2, Saved{State: []byte(`{"v":2}`), Policy: "strict", OnDemand: true}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AddDevice(ctx, "api-1", []byte(`{"serial":"A"}`)); !ok || err != nil {
		t.Fatalf("AddDevice = %v %v", ok, err)
	}
	if ok, _ := s.AddDevice(ctx, "api-1", []byte(`{}`)); ok {
		t.Error("AddDevice twice succeeded")
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Latest leaves the EAR token out; Last has it.
	if got := latest["old"]; got.Status != "affirming" || got.EAR != "" {
		t.Errorf("the version-1 result: %+v", got)
	}
	if got, ok, err := s.Last(ctx, "old"); err != nil || !ok || got.EAR != "x.y.z" {
		t.Errorf("the version-1 result, by Last: %+v %v %v", got, ok, err)
	}
	got := latest["rtr"]
	if got.Status != "affirming" || got.Policy != "strict" || got.Evidence != "0102" || len(got.TPMs) != 1 || got.TPMs[0].Name != "lc1" {
		t.Errorf("latest = %+v", got)
	}
	if res := got.Result(); res.Status != ear.TrustTierAffirming || res.Device != "rtr" || len(res.Evidence) != 2 {
		t.Errorf("Result() = %+v", res)
	}
	h, _ := s.History(ctx, "rtr", 10)
	if len(h) != 2 || h[1].Superseded == "" || h[0].Superseded != "" {
		t.Errorf("on-demand re-attestation: history %+v", h)
	}
	states, err := s.States(ctx)
	if err != nil || string(states["rtr"]) != `{"v":2}` {
		t.Errorf("States() = %q, %v", states, err)
	}
	devs, err := s.Devices(ctx)
	if err != nil || string(devs["api-1"]) != `{"serial":"A"}` {
		t.Errorf("Devices() = %q, %v", devs, err)
	}
	if err := s.RemoveDevice(ctx, "rtr"); err != nil {
		t.Fatal(err)
	}
	if states, _ := s.States(ctx); states["rtr"] != nil {
		t.Error("RemoveDevice kept the verifier's state")
	}
	s.Close()

	db, _ = sql.Open("sqlite", "file:"+path)
	db.Exec(`PRAGMA user_version = 99`)
	db.Close()
	if s, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open(a newer schema) = %v, want a refusal", err)
	}
}

func TestPrune(t *testing.T) { eachBackend(t, testPrune) }

func testPrune(t *testing.T, open func() (*Store, error)) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-48 * time.Hour)
	for i := range 5 {
		for _, d := range []string{"a", "b"} {
			r := &verifier.Result{Device: d, Time: old.Add(time.Duration(i) * time.Minute)}
			if d == "b" && i == 4 {
				r.Time = time.Now()
			}
			if _, err := s.Save(ctx, r, Saved{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.Prune(ctx, time.Now().Add(-24*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("Prune deleted %d results, want 6 (3 of each device)", n)
	}
	for _, d := range []string{"a", "b"} {
		if h, _ := s.History(ctx, d, 10); len(h) != 2 {
			t.Errorf("%s: %d results kept, want its newest 2", d, len(h))
		}
	}
}

// BenchmarkSave is the cost of keeping one result (a 1.5 KB EAR, a
// 1.5 KB verifier state) against its baseline, measured in the same run:
// a bare INSERT of the same bytes into a one-table database with the same
// pragmas (WAL, the same synchronous), one transaction each; for each
// Sync.
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	earTok := []byte(strings.Repeat("e", 1500))
	state := []byte(strings.Repeat("s", 1500))
	for _, sync := range []Sync{SyncNormal, SyncFull} {
		b.Run("baseline-insert-"+string(sync), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bare.db")
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous("+string(sync)+")")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, device TEXT, ear TEXT, state BLOB)`); err != nil {
				b.Fatal(err)
			}
			c0 := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e3, "µs-cpu/op") }()
			for b.Loop() {
				tx, _ := db.Begin()
				if _, err := tx.Exec(`INSERT INTO t (device, ear, state) VALUES (?, ?, ?)`, "rtr", string(earTok), state); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("save-"+string(sync), func(b *testing.B) {
			s, err := OpenWith(ctx, filepath.Join(b.TempDir(), "riv.db"), Options{Sync: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c0 := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e3, "µs-cpu/op") }()
			r := &verifier.Result{Device: "rtr", Serial: "RTR", Status: ear.TrustTierAffirming, EAR: earTok, Time: time.Now(), Evidence: make([]byte, 32),
				Reasons: []string{"file-system: not in any signed RIM: /tmp/x"}}
			for i := 0; b.Loop(); i++ {
				r.Device = fmt.Sprintf("rtr-%d", i%1000)
				if _, err := s.Save(ctx, r, Saved{State: state, Policy: "default"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The same save into PostgreSQL (a server of the test's own, on a
	// Unix socket, fsync off): the collector's CPU per save; the server's
	// is its own process's.
	b.Run("save-postgres", func(b *testing.B) {
		s := openPostgres(b)
		c0 := cpuTime()
		defer func() { b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e3, "µs-cpu/op") }()
		r := &verifier.Result{Device: "rtr", Serial: "RTR", Status: ear.TrustTierAffirming, EAR: earTok, Time: time.Now(), Evidence: make([]byte, 32)}
		for i := 0; b.Loop(); i++ {
			r.Device = fmt.Sprintf("rtr-%d", i%1000)
			if _, err := s.Save(ctx, r, Saved{State: state, Policy: "default"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A fleet: 64 polls finishing at once share their transactions.
	b.Run("save-64-concurrent", func(b *testing.B) {
		s, err := Open(ctx, filepath.Join(b.TempDir(), "riv.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var n atomic.Int64
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				r := &verifier.Result{Device: fmt.Sprintf("rtr-%d", i%1000), Serial: "RTR", Status: ear.TrustTierAffirming, EAR: earTok, Time: time.Now(), Evidence: make([]byte, 32)}
				if _, err := s.Save(ctx, r, Saved{State: state, Policy: "default"}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// Concurrent saves are group-committed: each gets its own id and every
// one is kept.
func TestConcurrentSaves(t *testing.T) { eachBackend(t, testConcurrentSaves) }

func testConcurrentSaves(t *testing.T, open func() (*Store, error)) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	ids := map[int64]bool{}
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id, err := s.Save(ctx, &verifier.Result{Device: fmt.Sprintf("d%d", g), Time: time.Now(), Reasons: []string{strconv.Itoa(i)}}, Saved{State: []byte("x")})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1000 {
		t.Errorf("%d distinct ids, want 1000", len(ids))
	}
	for g := range 50 {
		if h, _ := s.History(ctx, fmt.Sprintf("d%d", g), 100); len(h) != 20 {
			t.Errorf("d%d: %d results, want 20", g, len(h))
		}
	}
	s.Close()
	if _, err := s.Save(ctx, &verifier.Result{Device: "late"}, Saved{}); err == nil {
		t.Error("Save after Close succeeded")
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// With SyncNormal a commit is in the write-ahead log at once and in the
// database file (synced) within DurableWithin: the database file alone,
// copied after that, holds the result; copied before, it does not. With
// SyncFull nothing waits: a commit is synced in the log.
func TestDurableWithin(t *testing.T) {
	ctx := context.Background()
	mainFileHas := func(t *testing.T, path, device string) bool {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(t.TempDir(), "copy.db")
		if err := os.WriteFile(cp, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(ctx, cp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, ok, err := c.Last(ctx, device)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, tc := range []struct {
		within time.Duration
		want   bool
	}{{time.Hour, false}, {50 * time.Millisecond, true}} {
		t.Run(tc.within.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "riv.db")
			s, err := OpenWith(ctx, path, Options{DurableWithin: tc.within})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Save(ctx, &verifier.Result{Device: "rtr", Time: time.Now(), EAR: []byte("a.b.c")}, Saved{State: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Last(ctx, "rtr"); !ok {
				t.Fatal("result not readable after Save")
			}
			time.Sleep(300 * time.Millisecond)
			if got := mainFileHas(t, path, "rtr"); got != tc.want {
				t.Errorf("database file alone holds the result: %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := OpenWith(ctx, filepath.Join(t.TempDir(), "x.db"), Options{Sync: "sometimes"}); err == nil {
		t.Error("sync \"sometimes\" accepted")
	}
}

// The store holds its database alone: a second collector on the same
// data_dir is refused with a clear error, and the database opens again
// once the first has closed it (or died: the lock goes with its process,
// which the fleet test's kill -9 covers).
func TestOneCollectorPerDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "riv.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, &verifier.Result{Device: "rtr1", Time: time.Now()}, Saved{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if o, err := Open(ctx, path); err == nil {
		o.Close()
		t.Fatal("a second Open of a database in use succeeded")
	} else if !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second Open: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if _, err := os.Stat(path + "-shm"); err == nil {
		t.Error("a shared-memory index file exists: the log's index should be private to the collector")
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.Last(ctx, "rtr1"); err != nil || !ok {
		t.Errorf("after reopening: Last = %v, %v", ok, err)
	}
}

// On PostgreSQL the outbox hands each due notification to one
// deliverer: a second Due at the same moment (another collector on the
// same database) gets the others; a claim that is not settled is due
// again after ClaimFor. On SQLite (one deliverer) Due claims nothing.
func TestOutboxClaims(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	for i := range 6 {
		if _, err := s.Enqueue(ctx, "http://127.0.0.1:1/hook", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	a, err := s.Due(ctx, now, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Due(ctx, now, 4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, m := range append(a, b...) {
		if seen[m.ID] {
			t.Errorf("notification %d handed out twice", m.ID)
		}
		seen[m.ID] = true
	}
	if len(a) != 4 || len(b) != 2 {
		t.Errorf("claimed %d then %d, want 4 then 2", len(a), len(b))
	}
	if len(a) > 1 && a[0].ID > a[1].ID {
		t.Errorf("Due not oldest first: %d before %d", a[0].ID, a[1].ID)
	}
	if err := s.Delivered(ctx, a[0].ID); err != nil {
		t.Fatal(err)
	}
	again, err := s.Due(ctx, now.Add(ClaimFor+time.Second), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 5 {
		t.Errorf("after the claims lapsed %d due, want the 5 not delivered", len(again))
	}

	lite, err := Open(ctx, filepath.Join(t.TempDir(), "riv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	lite.Enqueue(ctx, "http://127.0.0.1:1/hook", []byte("x"))
	for range 2 {
		if m, err := lite.Due(ctx, time.Now(), 10); err != nil || len(m) != 1 {
			t.Errorf("SQLite Due = %d, %v; want the one notification each time", len(m), err)
		}
	}
}

// Leases: a device is held by one collector at a time; a result saved
// under a lease that was released, expired and taken, is refused and
// not kept; collectors claiming at once never get the same device.
func TestLeases(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	var devs []string
	for i := range 100 {
		devs = append(devs, fmt.Sprintf("rtr-%03d", i))
	}
	if err := s.AddLeases(ctx, devs); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLeases(ctx, devs[:10]); err != nil { // again: no change
		t.Fatal(err)
	}
	if n, err := s.Heartbeat(ctx, "a", time.Minute); err != nil || n != 1 {
		t.Fatalf("heartbeat: %d live, %v", n, err)
	}
	// Four collectors claim at once.
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	for _, c := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				g, err := s.Claim(ctx, c, time.Minute, devs, 10)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, x := range g {
					if o, dup := owner[x.Device]; dup {
						t.Errorf("%s granted to %s and %s", x.Device, o, c)
					}
					owner[x.Device] = c
					if x.Epoch != 1 {
						t.Errorf("%s: epoch %d, want 1", x.Device, x.Epoch)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(owner) != 100 {
		t.Errorf("%d devices claimed, want all 100", len(owner))
	}
	if g, _ := s.Claim(ctx, "e", time.Minute, devs, 100); len(g) != 0 {
		t.Errorf("%d held devices claimed again", len(g))
	}
	total, held, err := s.LeaseCounts(ctx)
	if err != nil || total != 100 || held != 100 {
		t.Errorf("LeaseCounts = %d, %d, %v; want 100, 100", total, held, err)
	}

	var mine string
	for d, o := range owner {
		if o == "a" {
			mine = d
			break
		}
	}
	res := func() *verifier.Result {
		return &verifier.Result{Device: mine, Time: time.Now(), Status: ear.TrustTierAffirming}
	}
	if _, err := s.Save(ctx, res(), Saved{Lease: &Lease{Owner: "a", Epoch: 1}, NextAt: time.Now().Add(time.Minute), Collector: "a"}); err != nil {
		t.Fatalf("save under the lease: %v", err)
	}
	if _, err := s.Save(ctx, res(), Saved{Lease: &Lease{Owner: "b", Epoch: 1}}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("save by a collector without the lease: %v, want ErrLeaseLost", err)
	}
	// a lets it go (or lets it expire): e takes it in epoch 2, and a's
	// late result is refused.
	if err := s.Release(ctx, "a", []string{mine}); err != nil {
		t.Fatal(err)
	}
	g, err := s.Claim(ctx, "e", time.Minute, devs, 100)
	if err != nil || len(g) != 1 || g[0].Device != mine || g[0].Epoch != 2 || g[0].NextAt.IsZero() {
		t.Fatalf("claim after release = %+v, %v; want %s in epoch 2 with its due time", g, err, mine)
	}
	if _, err := s.Save(ctx, res(), Saved{Lease: &Lease{Owner: "a", Epoch: 1}}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("late save by the old holder: %v, want ErrLeaseLost", err)
	}
	if h, _ := s.History(ctx, mine, 10); len(h) != 1 || h[0].Collector != "a" {
		t.Errorf("history = %+v, want the one result saved under a lease", h)
	}
	// Expiry: b's leases lapse without renewal; a claims them.
	if _, err := s.Renew(ctx, "b", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	g, err = s.Claim(ctx, "a", time.Minute, devs, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range g {
		if owner[x.Device] != "b" || x.Epoch != 2 {
			t.Errorf("claimed %+v, want only b's expired leases in epoch 2", x)
		}
	}
	if r, _ := s.Renew(ctx, "b", time.Minute); len(r) != 0 {
		t.Errorf("b renewed %d leases a took", len(r))
	}
}

// Leases are PostgreSQL's: SQLite's one collector refuses them.
func TestLeasesNeedPostgres(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "riv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Claim(context.Background(), "a", time.Minute, []string{"x"}, 1); err == nil {
		t.Error("Claim on SQLite succeeded")
	}
	if _, err := s.Save(context.Background(), &verifier.Result{Device: "x"}, Saved{Lease: &Lease{Owner: "a"}}); err == nil {
		t.Error("Save under a lease on SQLite succeeded")
	}
}
