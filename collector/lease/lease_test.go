package lease

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Three collectors split 30 devices evenly and disjointly; when one
// dies (stops renewing) the other two take its devices within TTL×4/3,
// each told of the ones it took; a fourth that joins gets a share as the
// others give theirs up; one that stops releases its leases at once.
func TestShareAndTakeOver(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	var devs []string
	for i := range 30 {
		devs = append(devs, fmt.Sprintf("rtr-%02d", i))
	}
	const ttl = 600 * time.Millisecond
	newManager := func(id string, acquired map[string]int) *Manager {
		st, err := store.OpenPostgres(ctx, url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return New(Options{Store: st, ID: id, TTL: ttl, Devices: func() []string { return devs },
			Acquired: func(d string, _ time.Time) { acquired[d]++ }})
	}
	got := map[string]map[string]int{"a": {}, "b": {}, "c": {}, "d": {}}
	ms := map[string]*Manager{}
	for _, id := range []string{"a", "b", "c"} {
		ms[id] = newManager(id, got[id])
	}
	round := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := ms[id].Round(ctx); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
	}
	// disjoint checks that no device is held twice and returns the
	// count each holds.
	disjoint := func(ids ...string) map[string]int {
		t.Helper()
		holder := map[string]string{}
		n := map[string]int{}
		for _, id := range ids {
			for _, d := range ms[id].Held() {
				if h, dup := holder[d]; dup {
					t.Errorf("%s held by %s and %s", d, h, id)
				}
				holder[d] = id
				n[id]++
			}
		}
		return n
	}
	// Two rounds: the first collector takes everything (alone so far),
	// then gives up its excess as the others appear.
	round("a", "b", "c")
	round("a", "b", "c")
	round("a", "b", "c")
	if n := disjoint("a", "b", "c"); n["a"] != 10 || n["b"] != 10 || n["c"] != 10 {
		t.Fatalf("shares %v, want 10 each", n)
	}
	lease, _, ok := ms["a"].Begin(ms["a"].Held()[0])
	if !ok || lease.Owner != "a" {
		t.Fatalf("Begin on a held device = %v, %v", lease, ok)
	}
	if _, _, ok := ms["a"].Begin(ms["b"].Held()[0]); ok {
		t.Error("Begin on another collector's device succeeded")
	}

	// a dies: b and c go on renewing; a's leases lapse and are taken.
	aHeld := ms["a"].Held()
	start := time.Now()
	for time.Since(start) < 2*ttl {
		round("b", "c")
		time.Sleep(ttl / 3)
		if n := disjoint("b", "c"); n["b"]+n["c"] == 30 {
			break
		}
	}
	took := time.Since(start)
	if n := disjoint("b", "c"); n["b"] != 15 || n["c"] != 15 {
		t.Fatalf("after a died: shares %v, want 15 each", n)
	}
	if took > ttl*4/3+ttl/3 {
		t.Errorf("takeover took %v, want within TTL×4/3 (%v) and a round", took, ttl*4/3)
	}
	for _, d := range aHeld {
		if got["b"][d]+got["c"][d] != 1 {
			t.Errorf("%s: taken %d times, want once", d, got["b"][d]+got["c"][d])
		}
	}
	// a's hold lapsed locally too: it starts no poll.
	if _, _, ok := ms["a"].Begin(aHeld[0]); ok {
		t.Error("the dead collector still starts polls")
	}

	// d joins: b and c give up a quarter each.
	ms["d"] = newManager("d", got["d"])
	for range 3 {
		round("b", "c", "d")
	}
	if n := disjoint("b", "c", "d"); n["b"] != 10 || n["c"] != 10 || n["d"] != 10 {
		t.Errorf("after d joined: shares %v, want 10 each", n)
	}

	// d stops: its leases are released, not left to expire.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { ms["d"].Run(rctx); close(done) }()
	time.Sleep(ttl / 6)
	cancel()
	<-done
	ms["d"].Leave()
	round("b", "c")
	if n := disjoint("b", "c"); n["b"]+n["c"] != 30 {
		t.Errorf("after d stopped: %v held, want all 30 at once", n)
	}
}
