package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/syncbuf"
)

// running runs s until the test ends and returns a context for its
// calls, bounded to 10 s.
func running(t *testing.T, s *Scheduler) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	t.Cleanup(acancel)
	return actx
}

// TestAddRemoveAttest: a device added while the scheduler runs is polled;
// one removed is not any more, and an on-demand poll of a removed device
// returns instead of waiting. The devices here cannot be reached (no
// listener): unreachable is their state, with the error, never a verdict.
func TestAddRemoveAttest(t *testing.T) {
	v := verifier.New(verifier.Policy{}, nil)
	target := verifier.Target{Name: "x", TLSAddr: "127.0.0.1:1", StageTimeout: 100 * time.Millisecond}
	s := New(Options{Interval: time.Hour, PollTimeout: time.Second}, []Device{{Name: "a", Target: target, Verifier: v}})
	actx := running(t, s)
	st, err := s.Attest(actx, "a")
	if err != nil || st.Unreachable == "" || st.Result != nil || st.Polls == 0 {
		t.Fatalf("attest a: %+v %v", st, err)
	}
	if err := s.Add(Device{Name: "b", Target: target, Verifier: v}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Device{Name: "b", Target: target, Verifier: v}); err == nil {
		t.Error("a device added twice")
	}
	if st, err := s.Attest(actx, "b"); err != nil || st.Unreachable == "" {
		t.Errorf("attest b: %+v %v", st, err)
	}
	if p := s.Posture(); p["unreachable"] != 2 {
		t.Errorf("posture %v", p)
	}
	if err := s.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attest(actx, "b"); err == nil {
		t.Error("attest of a removed device")
	}
	if _, ok := s.Device("b"); ok || len(s.Devices()) != 1 {
		t.Errorf("devices after the removal: %+v", s.Devices())
	}
}

// heldOnly leases the devices it names, for an hour.
type heldOnly map[string]bool

func (h heldOnly) Begin(d string) (*store.Lease, time.Time, bool) {
	return &store.Lease{Owner: "me", Epoch: 1}, time.Now().Add(time.Hour), h[d]
}
func (heldOnly) End(string)            {}
func (h heldOnly) Holds(d string) bool { return h[d] }

type counter struct{ started atomic.Int64 }

func (c *counter) Started()                                    { c.started.Add(1) }
func (c *counter) Done(*verifier.Result, error, time.Duration) {}

// TestLeasedElsewhere: with leases, a device this collector does not
// hold is never polled here (no poll starts), and asking for its
// attestation here is refused with ErrElsewhere; the one it holds is
// polled.
func TestLeasedElsewhere(t *testing.T) {
	v := verifier.New(verifier.Policy{}, nil)
	target := verifier.Target{Name: "x", TLSAddr: "127.0.0.1:1", StageTimeout: 100 * time.Millisecond}
	obs := &counter{}
	s := New(Options{Interval: 50 * time.Millisecond, PollTimeout: time.Second, Leases: heldOnly{"mine": true}, Observer: obs},
		[]Device{{Name: "mine", Target: target, Verifier: v}, {Name: "theirs", Target: target, Verifier: v}})
	actx := running(t, s)
	if _, err := s.Attest(actx, "theirs"); !errors.Is(err, ErrElsewhere) {
		t.Errorf("attest of a device leased elsewhere: %v, want ErrElsewhere", err)
	}
	st, err := s.Attest(actx, "mine")
	if err != nil || st.Polls == 0 {
		t.Fatalf("attest of a held device: %+v %v", st, err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, _ := s.Device("theirs"); st.Polls != 0 {
		t.Errorf("the device leased elsewhere was polled %d times here", st.Polls)
	}
	mine, _ := s.Device("mine")
	if n := obs.started.Load(); n != int64(mine.Polls) && n != int64(mine.Polls)+1 {
		t.Errorf("%d polls started, %d of the held device: polls started for the other", n, mine.Polls)
	}
}

// starts records when each poll started.
type starts struct {
	mu sync.Mutex
	at []time.Time
}

func (s *starts) Started()                                  { s.mu.Lock(); s.at = append(s.at, time.Now()); s.mu.Unlock() }
func (*starts) Done(*verifier.Result, error, time.Duration) {}

// TestNextWait: after a poll that reached the device the interval runs
// from its start (a slow poll does not stretch the period), never down
// to nothing; after a failure the backoff runs from its end.
func TestNextWait(t *testing.T) {
	same := func(d time.Duration) time.Duration { return d }
	for _, c := range []struct {
		failures int
		ok       bool
		elapsed  time.Duration
		want     time.Duration
	}{
		{0, true, 0, 30 * time.Second},
		{0, true, 10 * time.Second, 20 * time.Second},
		{0, true, 45 * time.Second, 3 * time.Second}, // a tenth of the interval
		{1, false, 60 * time.Second, 60 * time.Second},
		{4, false, time.Second, 300 * time.Second}, // at most 10 intervals
	} {
		if got := nextWait(30*time.Second, c.failures, c.ok, c.elapsed, same); got != c.want {
			t.Errorf("nextWait(30s, %d failures, ok %v, took %v) = %v, want %v", c.failures, c.ok, c.elapsed, got, c.want)
		}
	}
}

// TestBackoffFromEnd: a device that takes the connection and says
// nothing for 600 ms (the stage timeout) fails; the next poll starts a
// backed-off interval (2 s, ±10 %) after that one ended, not at once.
func TestBackoffFromEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	obs := &starts{}
	v := verifier.New(verifier.Policy{}, nil)
	target := verifier.Target{Name: "slow", TLSAddr: ln.Addr().String(), StageTimeout: 600 * time.Millisecond}
	s := New(Options{Interval: time.Second, PollTimeout: 10 * time.Second, Observer: obs}, []Device{{Name: "slow", Target: target, Verifier: v}})
	running(t, s)
	deadline := time.Now().Add(8 * time.Second)
	for {
		obs.mu.Lock()
		n := len(obs.at)
		var gap time.Duration
		if n >= 2 {
			gap = obs.at[1].Sub(obs.at[0])
		}
		obs.mu.Unlock()
		if n >= 2 {
			if gap < 2300*time.Millisecond || gap > 3100*time.Millisecond {
				t.Fatalf("the second poll started %v after the first; want 2 s ±10 %% after the first ended (≈ 0.6 s in)", gap)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d polls in 8 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// silent is a listener that takes connections and says nothing: a poll
// of it fails at its stage timeout.
func silent(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}

// inFlight counts the polls running at once, and the most seen.
type inFlight struct {
	mu        sync.Mutex
	now, most int
	done      int
}

func (f *inFlight) Started() {
	f.mu.Lock()
	f.now++
	f.most = max(f.most, f.now)
	f.mu.Unlock()
}

func (f *inFlight) Done(*verifier.Result, error, time.Duration) {
	f.mu.Lock()
	f.now--
	f.done++
	f.mu.Unlock()
}

// TestSlots: with two slots and eight devices due at once (each poll
// takes 400 ms to fail), no more than two polls run at once, the others
// count as queued, every device is polled, and a device asked for on
// demand goes ahead of the queue: its attestation returns within two
// slots' time, not after the whole backlog (1.6 s).
func TestSlots(t *testing.T) {
	addr := silent(t)
	v := verifier.New(verifier.Policy{}, nil)
	obs := &inFlight{}
	var devs []Device
	for i := range 8 {
		devs = append(devs, Device{Name: fmt.Sprintf("d%d", i), Target: verifier.Target{Name: "x", TLSAddr: addr, StageTimeout: 400 * time.Millisecond}, Verifier: v})
	}
	s := New(Options{Interval: time.Hour, MaxInFlight: 2, PollTimeout: 5 * time.Second, Observer: obs}, devs)
	actx := running(t, s)
	time.Sleep(100 * time.Millisecond)
	if q := s.Queued(); q != 6 {
		t.Errorf("queued %d, want 6 (8 due, 2 slots)", q)
	}
	// The last in line, asked for while its turn is ≈ 1.2 s away.
	last := "d0"
	s.mu.Lock()
	if n := len(s.ready); n > 0 {
		last = s.ready[n-1].d.Name
	}
	s.mu.Unlock()
	t0 := time.Now()
	st, err := s.Attest(actx, last)
	if took := time.Since(t0); err != nil || st.Polls != 1 || took > 900*time.Millisecond {
		t.Errorf("attest of %s, last in the queue: %+v %v after %v; want its poll within two slots (≤ 0.8 s)", last, st, err, took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs.mu.Lock()
		done, most := obs.done, obs.most
		obs.mu.Unlock()
		if most > 2 {
			t.Fatalf("%d polls at once, with 2 slots", most)
		}
		if done == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 8 polls done in 5 s", done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if q := s.Queued(); q != 0 {
		t.Errorf("queued %d after every poll", q)
	}
}

// TestIdleFleet: devices between polls are entries in the queue, not
// goroutines: 10,000 devices appraised a moment ago (each waits out its
// interval) leave the goroutine count where it was.
func TestIdleFleet(t *testing.T) {
	v := verifier.New(verifier.Policy{}, nil)
	var devs []Device
	for i := range 10000 {
		devs = append(devs, Device{Name: fmt.Sprintf("d%05d", i), Target: verifier.Target{Name: "x", TLSAddr: "127.0.0.1:1"}, Verifier: v})
	}
	s := New(Options{Interval: time.Hour}, devs)
	for _, e := range s.devices {
		e.state.LastPoll = time.Now()
	}
	before := runtime.NumGoroutine()
	running(t, s)
	time.Sleep(100 * time.Millisecond)
	if n := runtime.NumGoroutine() - before; n > 5 {
		t.Errorf("%d goroutines more for 10,000 idle devices", n)
	}
	s.mu.Lock()
	queued := len(s.queue)
	s.mu.Unlock()
	if queued != 10000 {
		t.Errorf("%d devices in the queue, want 10,000", queued)
	}
}

// TestPanicFailsPoll: an appraisal that panics fails that poll alone (the
// device shows the internal error), and the scheduler goes on polling.
func TestPanicFailsPoll(t *testing.T) {
	orig := appraiseTarget
	t.Cleanup(func() { appraiseTarget = orig })
	var calls atomic.Int64
	appraiseTarget = func(context.Context, *verifier.Verifier, verifier.Target) (*verifier.Result, error) {
		calls.Add(1)
		panic("decoder bug")
	}
	v := verifier.New(verifier.Policy{}, nil)
	s := New(Options{Interval: time.Hour}, []Device{{Name: "a", Verifier: v}, {Name: "b", Verifier: v}})
	actx := running(t, s)
	for _, name := range []string{"a", "b", "a"} {
		st, err := s.Attest(actx, name)
		if err != nil || !strings.Contains(st.Unreachable, "internal error") || !strings.Contains(st.Unreachable, "decoder bug") {
			t.Fatalf("attest %s after a panic: %+v %v", name, st, err)
		}
	}
	if n := calls.Load(); n < 3 {
		t.Errorf("%d appraisals, want every poll's", n)
	}
}

// TestPostureCounts: the counts Posture reads, kept as states change,
// agree with a walk of the fleet after polls, an addition, and the
// removal of a device while it is polled.
func TestPostureCounts(t *testing.T) {
	addr := silent(t)
	v := verifier.New(verifier.Policy{}, nil)
	dev := func(name, policy string) Device {
		return Device{Name: name, Policy: policy, Target: verifier.Target{Name: "x", TLSAddr: addr, StageTimeout: 300 * time.Millisecond}, Verifier: v}
	}
	obs := &inFlight{}
	s := New(Options{Interval: time.Hour, MaxInFlight: 1, PollTimeout: 5 * time.Second, Observer: obs}, []Device{dev("a", "p1"), dev("b", "p1"), dev("c", "p2")})
	agree := func(when string, want map[string]int) {
		t.Helper()
		walked := tally(s, (*State).posture)
		if got := s.Posture(); !maps.Equal(got, walked) || !maps.Equal(got, want) {
			t.Errorf("%s: posture %v, the fleet walked %v, want %v", when, got, walked, want)
		}
		byPolicy := tally(s, func(st *State) [2]string { return [2]string{st.Policy, st.posture()} })
		if got := s.PostureByPolicy(); !maps.Equal(got, byPolicy) {
			t.Errorf("%s: by policy %v, the fleet walked %v", when, got, byPolicy)
		}
	}
	agree("before Run", map[string]int{"pending": 3})
	actx := running(t, s)
	// One slot: one device polls, two wait; remove the one polling.
	time.Sleep(100 * time.Millisecond)
	s.mu.Lock()
	var polling string
	for name, e := range s.devices {
		if e.polling {
			polling = name
		}
	}
	s.mu.Unlock()
	if polling == "" {
		t.Fatal("no device polling")
	}
	if err := s.Remove(polling); err != nil {
		t.Fatal(err)
	}
	agree("removed while polled", map[string]int{"pending": 2})
	if err := s.Add(dev("d", "p2")); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.Names() {
		if _, err := s.Attest(actx, name); err != nil {
			t.Fatal(err)
		}
	}
	agree("every device polled", map[string]int{"unreachable": 3})
}

// TestStateRestoredAtFirstPoll: the verifier states a restart reads from
// the store are given to the verifier at each device's first poll, not at
// the start (a device not polled yet has not had its decoded), and a
// state that does not decode is dropped with a warning naming the device.
func TestStateRestoredAtFirstPoll(t *testing.T) {
	orig := appraiseTarget
	t.Cleanup(func() { appraiseTarget = orig })
	appraiseTarget = func(context.Context, *verifier.Verifier, verifier.Target) (*verifier.Result, error) {
		return nil, errors.New("no route to host")
	}
	// "due" was appraised two intervals ago, "later" a minute ago.
	st := storeWith(t, map[string]time.Time{"due": time.Now().Add(-2 * time.Hour), "later": time.Now().Add(-time.Minute)})
	var logs syncbuf.Buffer
	v := verifier.New(verifier.Policy{}, nil)
	s := New(Options{Interval: time.Hour, Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		[]Device{{Name: "due", Verifier: v}, {Name: "later", Verifier: v}})
	actx := running(t, s)
	notRestored := func(name string) bool {
		return strings.Contains(logs.String(), `msg="verifier state not restored: the next poll starts afresh" device=`+name+" ")
	}
	for deadline := time.Now().Add(5 * time.Second); !notRestored("due"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the due device's state was not given to the verifier at its poll:\n%s", logs.String())
		}
	}
	if notRestored("later") {
		t.Fatalf("a device not polled yet had its state decoded:\n%s", logs.String())
	}
	if got := s.Posture(); got["affirming"] != 1 || got["unreachable"] != 1 {
		t.Errorf("posture: %v, want the restored result affirming and the device polled unreachable", got)
	}
	if _, err := s.Attest(actx, "later"); err != nil {
		t.Fatal(err)
	}
	if !notRestored("later") {
		t.Fatalf("the state was not given to the verifier at the on-demand poll:\n%s", logs.String())
	}
}

// storeWith is a store holding an affirming result appraised at each
// time given, each with a verifier state that does not decode.
func storeWith(t *testing.T, appraised map[string]time.Time) *store.Store {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "riv.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for name, at := range appraised {
		r := &verifier.Result{Device: name, Time: at, Status: ear.TrustTierAffirming}
		if _, err := st.Save(ctx, r, store.Saved{State: []byte("not a verifier state"), Started: at, Finished: at}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestWakeBeforeStart: a lease taken before the scheduler has started a
// device (Run reads the store's states first) sets the device's first
// poll; it is not lost to the interval the stored result leaves.
func TestWakeBeforeStart(t *testing.T) {
	orig := appraiseTarget
	t.Cleanup(func() { appraiseTarget = orig })
	polled := make(chan string, 4)
	appraiseTarget = func(_ context.Context, _ *verifier.Verifier, tg verifier.Target) (*verifier.Result, error) {
		polled <- tg.Name
		return nil, errors.New("no route to host")
	}
	st := storeWith(t, map[string]time.Time{"taken": time.Now().Add(-time.Minute), "kept": time.Now().Add(-time.Minute)})
	v := verifier.New(verifier.Policy{}, nil)
	s := New(Options{Interval: time.Hour, Store: st},
		[]Device{{Name: "taken", Target: verifier.Target{Name: "taken"}, Verifier: v}, {Name: "kept", Target: verifier.Target{Name: "kept"}, Verifier: v}})
	s.Wake("taken", time.Now())
	running(t, s)
	select {
	case name := <-polled:
		if name != "taken" {
			t.Fatalf("%s polled first, within its interval", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the device whose lease was taken before the start was not polled")
	}
	select {
	case name := <-polled:
		t.Fatalf("%s polled again, or within its interval", name)
	case <-time.After(200 * time.Millisecond):
	}
}
