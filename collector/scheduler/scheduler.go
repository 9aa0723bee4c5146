// Package scheduler polls a fleet: each device at its interval with
// jitter, a bounded number of polls in flight, every result stored, the
// latest kept for the API. A device that cannot be reached is a state
// ("unreachable", with the error), retried with backoff, never a verdict;
// one that answers garbage gets the verifier's contraindicated verdict
// and never holds up the others.
package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
)

// Device is one device to poll.
type Device struct {
	Name     string
	Target   verifier.Target
	Verifier *verifier.Verifier
	Interval time.Duration // default Options.Interval
	// Policy names the policy set Verifier appraises against.
	Policy string
	// Spec, when set, is the device as added through the API (JSON): the
	// store keeps it, so that the device is polled again after a restart,
	// until it is removed.
	Spec []byte
	// Fixed marks a device of the configuration: removed there, not
	// through the API.
	Fixed bool
}

// storeTimeout bounds a write to the store.
const storeTimeout = 30 * time.Second

// Errors of Add and Remove.
var (
	ErrNoDevice = errors.New("no such device")
	ErrExists   = errors.New("a device of that name is polled already")
	ErrFixed    = errors.New("the device is defined in the configuration: remove it there")
	// ErrElsewhere is Attest's error for a device another collector
	// holds the lease of (Options.Leases).
	ErrElsewhere = errors.New("another collector polls the device now (it holds the lease): ask that one")
)

// State is what is known of a device now.
type State struct {
	Name string
	// Result is the latest appraisal (nil before the first).
	Result *verifier.Result
	// Unreachable is the error of the last poll when it could not reach
	// the device; LastPoll is when that poll ended.
	Unreachable string
	LastPoll    time.Time
	Polls       int
	// Policy is the device's policy set.
	Policy string
	// Collector appraised Result (with Options.Leases: several share the
	// fleet).
	Collector string
}

// Options configure the scheduler.
type Options struct {
	Interval    time.Duration // default 30 s
	MaxInFlight int           // default 64
	PollTimeout time.Duration // default 60 s
	Store       *store.Store  // where every result goes (optional)
	Logger      *slog.Logger
	// Loaded, when set, runs once Run has restored the store's results
	// and read its states, as the first polls start.
	Loaded func()
	// Preloaded, when set, is Store's results and states read ahead
	// (Preload on the same store).
	Preloaded *Preloaded
	// Observer, when set, is told of every poll (the metrics).
	Observer Observer
	// Outbox, when set, keeps the events of each poll before the poll
	// counts as done (an on-demand attestation returns after it): the
	// webhooks' durable queue.
	Outbox func(ctx context.Context, evs []Event)
	// Leases, when set, share the fleet with other collectors on the
	// same (PostgreSQL) store: a device is polled only under its lease
	// (collector/lease), and the API shows the store's latest result of
	// the devices others hold.
	Leases Leases
	// Collector names this collector in the results it keeps.
	Collector string
}

// Leases says which devices this collector may poll now.
type Leases interface {
	// Begin starts a poll under the device's lease: the lease to save
	// under and when the poll must end; false when the lease is not held
	// (another collector polls the device).
	Begin(device string) (*store.Lease, time.Time, bool)
	End(device string)
	Holds(device string) bool
}

// Observer is told when a poll starts and how it ended: its verdict, or
// "unreachable".
type Observer interface {
	Started()
	// Done is a finished poll: its result, or the error that left the
	// device unreachable.
	Done(r *verifier.Result, err error, took time.Duration)
}

// Scheduler polls devices until its context ends.
type Scheduler struct {
	o       Options
	mu      sync.Mutex
	devices map[string]*entry
	sem     chan struct{}
	queued  atomic.Int64 // polls due, waiting for a slot
	subs    map[chan Event]bool
	// The devices waiting for their next poll, and those due that wait
	// for a slot (sem), the ones an operator asked for first; kick wakes
	// Run's dispatcher when the soonest changed or a slot was freed.
	queue         queue
	urgent, ready []*entry
	kick          chan struct{}
	// counts is the devices by policy set and posture, kept as their
	// states change: the API's posture and the metrics read it without
	// walking the fleet.
	counts map[[2]string]int
	// While Run runs: its context and its wait group, for devices added
	// later; done once it has returned.
	ctx  context.Context
	wg   *sync.WaitGroup
	done bool
}

type entry struct {
	d     Device
	state State
	epoch int64 // the lease whose state the verifier has
	// Scheduling (s.mu): a device waiting for its next poll is in the
	// scheduler's queue, ordered by due; no goroutine waits for it.
	due      time.Time
	at       int  // index in the queue; -1 when not in it
	ready    bool // due, waiting for a slot
	polling  bool
	stopped  bool
	failures int
	// waiting are the on-demand callers (Attest) for the next poll to
	// end; wakeAt is a due time a lease taken set during a poll or
	// before the device started (Run reading the store's states).
	waiting []chan struct{}
	wakeAt  time.Time
	// stored is the verifier's state as the store had it when Run
	// started or the device was added, given to the verifier as the
	// device's first poll begins (launch).
	stored []byte
	ctx    context.Context
	cancel context.CancelFunc // ends its polls (Remove)
}

// queue is the devices waiting for their next poll, soonest first (a
// container/heap).
type queue []*entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i]; q[i].at, q[j].at = i, j }
func (q *queue) Push(x any)        { e := x.(*entry); e.at = len(*q); *q = append(*q, e) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	e.at = -1
	return e
}

// New returns a scheduler for devices.
func New(o Options, devices []Device) *Scheduler {
	if o.Interval == 0 {
		o.Interval = 30 * time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 64
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{o: o, devices: map[string]*entry{}, sem: make(chan struct{}, o.MaxInFlight), subs: map[chan Event]bool{}, kick: make(chan struct{}, 1), counts: map[[2]string]int{}}
	for _, d := range devices {
		e := s.newEntry(d)
		s.devices[d.Name] = e
		s.count(e, 1)
	}
	return s
}

func (s *Scheduler) newEntry(d Device) *entry {
	if d.Interval == 0 {
		d.Interval = s.o.Interval
	}
	return &entry{d: d, state: State{Name: d.Name, Policy: d.Policy}, at: -1}
}

// Run polls every device until ctx ends. With a store, each device starts
// from what was kept of it: its latest result, shown until the next poll
// ends, and the verifier's state, so that the first poll is incremental;
// a device appraised less than an interval ago is polled when its
// interval is up, not all at once.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	// The results first, under the lock: the API answers from them as
	// soon as they are in. The verifier states are read after, without
	// it, and each device starts once its state is there. A device
	// added meanwhile (s.ctx set) is restored and started by Add.
	pre := s.o.Preloaded
	if pre == nil && s.o.Store != nil {
		pre = Preload(ctx, s.o.Store)
	}
	s.o.Preloaded = nil // its maps, the size of the fleet, are garbage once read
	s.mu.Lock()
	s.ctx, s.wg = ctx, &wg
	s.loadResults(ctx, pre)
	s.mu.Unlock()
	states := s.loadStates(ctx, pre)
	s.mu.Lock()
	for _, e := range s.devices {
		if e.ctx == nil {
			e.stored = states[e.d.Name]
			s.start(e)
		}
	}
	if s.o.Loaded != nil {
		s.o.Loaded()
	}
	s.mu.Unlock()
	s.dispatch(ctx)
	wg.Wait()
	// Stopped: a caller waiting for a poll gets the state as it is.
	s.mu.Lock()
	s.done = true
	for _, e := range s.devices {
		e.release()
	}
	s.mu.Unlock()
}

// dispatch starts each device's poll when it is due and a slot is free
// (at most MaxInFlight polls at once), until ctx ends. One timer serves
// the fleet: a device between polls is a queue entry, not a goroutine
// with a timer of its own (≈ 8 KB of stack each), and a poll waiting for
// a slot is not a goroutine either.
func (s *Scheduler) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		next := time.Hour
		for len(s.queue) > 0 {
			e := s.queue[0]
			if d := e.due.Sub(now); d > 0 {
				next = d
				break
			}
			heap.Pop(&s.queue)
			e.ready = true
			if len(e.waiting) > 0 {
				s.urgent = append(s.urgent, e)
			} else {
				s.ready = append(s.ready, e)
			}
		}
		// Only the dispatcher takes slots, so one seen free stays free.
		for len(s.sem) < cap(s.sem) {
			e := s.next()
			if e == nil {
				break
			}
			s.sem <- struct{}{}
			s.launch(e)
		}
		s.queued.Store(int64(len(s.urgent) + len(s.ready)))
		s.mu.Unlock()
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
	}
}

// next takes the next due device to poll, on-demand ones first (s.mu
// held); nil when none is due. A device stopped while it waited is
// dropped.
func (s *Scheduler) next() *entry {
	for {
		var e *entry
		switch {
		case len(s.urgent) > 0:
			e, s.urgent = s.urgent[0], s.urgent[1:]
		case len(s.ready) > 0:
			e, s.ready = s.ready[0], s.ready[1:]
		default:
			s.urgent, s.ready = nil, nil // the arrays go with the backlog
			return nil
		}
		e.ready = false
		if !e.stopped {
			return e
		}
	}
}

// promote moves a due device asked for on demand ahead of the devices
// due by their interval (s.mu held).
func (s *Scheduler) promote(e *entry) {
	if i := slices.Index(s.ready, e); i >= 0 {
		s.ready = slices.Delete(s.ready, i, i+1)
		s.urgent = append(s.urgent, e)
	}
}

// wakeDispatch tells the dispatcher to look again.
func (s *Scheduler) wakeDispatch() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loadResults restores each device's latest result from the store (s.mu
// held; pre nil: no store).
func (s *Scheduler) loadResults(ctx context.Context, pre *Preloaded) {
	if pre == nil {
		return
	}
	latest, took, err := pre.results.take(ctx)
	if err != nil {
		s.o.Logger.Error("load results", "err", err)
		return
	}
	for _, e := range s.devices {
		if rec, ok := latest[e.d.Name]; ok {
			s.restoreResult(e, rec)
		}
	}
	clear(s.counts)
	for _, e := range s.devices {
		s.count(e, 1)
	}
	s.o.Logger.Info("results restored from the store", "devices", len(s.devices), "results", len(latest),
		"read_in", took.Round(time.Millisecond))
}

// loadStates reads the verifier's state of every device from the store
// (s.mu not held; pre nil: no store). Decoding one (≈ 45 µs) waits for the device's first
// poll (launch): done here it was most of a large fleet's start, and a
// device polled hourly does not need its state for an hour. A state that
// does not restore then is dropped with a warning: that device's next
// poll fetches its logs whole.
func (s *Scheduler) loadStates(ctx context.Context, pre *Preloaded) map[string][]byte {
	if pre == nil {
		return nil
	}
	states, took, err := pre.states.take(ctx)
	if err != nil {
		s.o.Logger.Error("load verifier states: first polls fetch the logs whole", "err", err)
		return nil
	}
	s.o.Logger.Info("verifier states read from the store", "states", len(states), "read_in", took.Round(time.Millisecond))
	return states
}

// count adds n of e's current state to the counts (s.mu held); a device
// stopped counts no more (its poll in flight may still end).
func (s *Scheduler) count(e *entry, n int) {
	if e.stopped {
		return
	}
	k := [2]string{e.state.Policy, e.state.posture()}
	if s.counts[k] += n; s.counts[k] == 0 {
		delete(s.counts, k)
	}
}

// restoreOne restores a device added while Run runs (s.mu held) from
// what the store has of it now; a verifier that knows the device already
// (the same one, for a device restarted by a reload) keeps its state.
func (s *Scheduler) restoreOne(e *entry) {
	if s.o.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	rec, ok, err := s.o.Store.Last(ctx, e.d.Name)
	if err != nil {
		ok = false
	}
	if ok {
		s.restoreResult(e, rec)
	}
	if e.d.Verifier != nil && !e.d.Verifier.Knows(e.d.Name) {
		e.stored, _ = s.o.Store.State(ctx, e.d.Name) // for its first poll (launch)
	}
}

// restoreResult sets e from its latest stored result.
func (s *Scheduler) restoreResult(e *entry, rec store.Record) {
	e.state.Result, e.state.LastPoll, e.state.Collector = withoutEAR(rec.Result()), rec.Time, rec.Collector
}

// restoreState gives e's verifier its stored state (when there is one).
func (s *Scheduler) restoreState(e *entry, state []byte) {
	if state != nil && e.d.Verifier != nil {
		if err := e.d.Verifier.Restore(e.d.Name, state); err != nil {
			s.o.Logger.Warn("verifier state not restored: the next poll starts afresh", "device", e.d.Name, "err", err)
		}
	}
}

// start schedules e's first poll (s.mu held, Run running): at once, or,
// for a device appraised less than an interval ago, when its interval is
// up (jittered: devices restored together drift apart).
func (s *Scheduler) start(e *entry) {
	e.ctx, e.cancel = context.WithCancel(s.ctx)
	now := time.Now()
	due := now
	if last := e.state.LastPoll; !last.IsZero() && len(e.waiting) == 0 {
		if wait := last.Add(e.d.Interval).Sub(now); wait > 0 {
			due = now.Add(jitter(min(wait, e.d.Interval)))
		}
	}
	if !e.wakeAt.IsZero() { // a lease taken before it started
		if len(e.waiting) == 0 {
			due = e.wakeAt
		}
		e.wakeAt = time.Time{}
	}
	s.schedule(e, due)
}

// schedule sets e's next poll (s.mu held). A device polling now keeps
// the time for when the poll ends.
func (s *Scheduler) schedule(e *entry, due time.Time) {
	switch {
	case e.stopped || e.ready:
		return // a due device is polled as soon as a slot frees
	case e.ctx == nil || e.polling:
		e.wakeAt = due // for start, or for the poll's end
		return
	case e.at >= 0:
		e.due = due
		heap.Fix(&s.queue, e.at)
	default:
		e.due = due
		heap.Push(&s.queue, e)
	}
	if e.at == 0 {
		s.wakeDispatch()
	}
}

// launch starts e's poll in the slot taken for it (s.mu held).
func (s *Scheduler) launch(e *entry) {
	e.polling = true
	waiting, stored := e.waiting, e.stored
	e.waiting, e.stored = nil, nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.restoreState(e, stored)
		began := time.Now()
		ok := s.poll(e.ctx, e, len(waiting) > 0)
		<-s.sem
		for _, w := range waiting {
			close(w)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.urgent)+len(s.ready) > 0 {
			s.wakeDispatch() // the slot freed goes to the next due
		}
		e.polling = false
		if ok {
			e.failures = 0
		} else if e.failures < 4 {
			e.failures++
		}
		if e.stopped || e.ctx.Err() != nil {
			e.release()
			return
		}
		// After a poll that reached the device the interval runs from
		// its start: a slow device or a store busy syncing does not
		// stretch the period. After a failure the backoff runs from its
		// end (a device that times out must not be retried at once),
		// and every wait is at least a tenth of the interval. Callers
		// that asked for a poll during this one get the next at once; a
		// lease taken sets its own time.
		due := time.Now().Add(nextWait(e.d.Interval, e.failures, ok, time.Since(began), jitter))
		switch {
		case len(e.waiting) > 0:
			due = time.Now()
		case !e.wakeAt.IsZero():
			due = e.wakeAt
		}
		e.wakeAt = time.Time{}
		s.schedule(e, due)
	}()
}

// release answers e's on-demand callers without a poll (s.mu held): e
// was stopped, or the scheduler was.
func (e *entry) release() {
	for _, w := range e.waiting {
		close(w)
	}
	e.waiting = nil
}

// Add starts polling another device.
func (s *Scheduler) Add(d Device) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.devices[d.Name]; dup {
		return fmt.Errorf("%q: %w", d.Name, ErrExists)
	}
	if d.Spec != nil && s.o.Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		ok, err := s.o.Store.AddDevice(ctx, d.Name, d.Spec)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%q: %w", d.Name, ErrExists)
		}
	}
	e := s.newEntry(d)
	if s.ctx != nil {
		s.restoreOne(e)
	}
	s.devices[d.Name] = e
	s.count(e, 1)
	if s.ctx != nil {
		s.start(e)
	}
	return nil
}

// RemoveFixed stops polling a device, of the configuration or not, and
// keeps what the store has of it: for a reload of the configuration.
func (s *Scheduler) RemoveFixed(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[name]
	if ok {
		s.stop(e)
	}
	return ok
}

// Spec returns the spec of a device added through the API.
func (s *Scheduler) Spec(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[name]
	if !ok || e.d.Spec == nil {
		return nil, false
	}
	return e.d.Spec, true
}

// Remove stops polling a device; its stored results stay.
func (s *Scheduler) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[name]
	if !ok {
		return fmt.Errorf("%q: %w", name, ErrNoDevice)
	}
	if e.d.Fixed {
		return fmt.Errorf("%q: %w", name, ErrFixed)
	}
	if s.o.Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := s.o.Store.RemoveDevice(ctx, name); err != nil {
			return err
		}
	}
	s.stop(e)
	return nil
}

// stop ends e's polls and forgets it (s.mu held).
func (s *Scheduler) stop(e *entry) {
	s.count(e, -1)
	e.stopped = true
	if e.cancel != nil {
		e.cancel()
	}
	if e.at >= 0 {
		heap.Remove(&s.queue, e.at)
	}
	if !e.polling {
		e.release()
	}
	delete(s.devices, e.d.Name)
}

// nextWait is how long a device's loop waits after a poll that took
// elapsed: the interval (doubled for each of the failures, up to 10
// intervals), jittered; after a poll that reached the device, less the
// time it took, but never under a tenth of the interval.
func nextWait(interval time.Duration, failures int, ok bool, elapsed time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	next := min(interval<<failures, 10*interval)
	wait := jitter(next)
	if ok {
		wait = max(wait-elapsed, interval/10)
	}
	return wait
}

// Wake tells the scheduler that this collector took the device's lease:
// it is polled at due (at once when that has passed), not at the end of
// the interval it was waiting out.
func (s *Scheduler) Wake(name string, due time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.devices[name]; ok {
		s.schedule(e, due)
	}
}

// takeOver reloads what the store has of a device whose lease this
// collector has just taken: the verifier's state and latest result the
// previous holder kept.
func (s *Scheduler) takeOver(e *entry, epoch int64) {
	if s.o.Store == nil || e.d.Verifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	state, err := s.o.Store.State(ctx, e.d.Name)
	if err != nil {
		s.o.Logger.Warn("lease taken: verifier state not loaded, the next poll starts afresh", "device", e.d.Name, "err", err)
	}
	e.d.Verifier.Forget(e.d.Name)
	rec, ok, err := s.o.Store.Last(ctx, e.d.Name)
	s.mu.Lock()
	if err == nil && ok {
		s.count(e, -1)
		s.restoreResult(e, rec)
		s.count(e, 1)
	}
	s.mu.Unlock()
	s.restoreState(e, state)
	e.epoch = epoch
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// jitter moves d by up to ±10 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// poll appraises the device once; false when it could not be reached. A
// result is stored (with the verifier's state of the device) before it is
// shown or notified: what the API or a webhook has shown survives a crash.
func (s *Scheduler) poll(ctx context.Context, e *entry, onDemand bool) bool {
	start := time.Now()
	deadline := start.Add(s.o.PollTimeout)
	var lease *store.Lease
	if s.o.Leases != nil {
		var until time.Time
		var ok bool
		if lease, until, ok = s.o.Leases.Begin(e.d.Name); !ok {
			return true // another collector's
		}
		defer s.o.Leases.End(e.d.Name)
		if lease.Epoch != e.epoch {
			s.takeOver(e, lease.Epoch)
		}
		deadline = minTime(deadline, until)
	}
	if s.o.Observer != nil {
		s.o.Observer.Started()
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	r, err := s.appraise(pctx, e)
	cancel()
	if s.o.Observer != nil {
		s.o.Observer.Done(r, err, time.Since(start))
	}
	shown := r
	if err == nil && s.o.Store != nil {
		snap, serr := e.d.Verifier.Snapshot(e.d.Name)
		if serr != nil {
			s.o.Logger.Error("verifier state", "device", e.d.Name, "err", serr)
		}
		// The store's own context: a result appraised is kept even when
		// the collector is stopping.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		_, serr = s.o.Store.Save(sctx, r, store.Saved{State: snap, Policy: e.d.Policy, OnDemand: onDemand,
			Collector: s.o.Collector, Started: start, Finished: time.Now(), Lease: lease, NextAt: time.Now().Add(e.d.Interval)})
		cancel()
		if errors.Is(serr, store.ErrLeaseLost) {
			// Another collector holds the device now: this result is
			// not kept, so neither shown nor notified.
			s.o.Logger.Warn("lease lost during the poll: result dropped", "device", e.d.Name)
			e.epoch = 0
			return true
		}
		if serr != nil {
			s.o.Logger.Error("store result", "device", e.d.Name, "err", serr)
		} else {
			shown = withoutEAR(r)
		}
	}
	if ctx.Err() != nil {
		return true
	}
	s.mu.Lock()
	prev := e.state
	s.count(e, -1)
	e.state.LastPoll, e.state.Polls = time.Now(), e.state.Polls+1
	if err != nil {
		e.state.Unreachable = err.Error()
	} else {
		e.state.Unreachable, e.state.Result, e.state.Collector = "", shown, s.o.Collector
	}
	s.count(e, 1)
	evs := s.publish(prev, e.state, onDemand)
	s.mu.Unlock()
	if s.o.Outbox != nil && len(evs) > 0 {
		s.o.Outbox(ctx, evs)
	}
	if err != nil {
		s.o.Logger.Warn("device unreachable", "device", e.d.Name, "err", err)
		return false
	}
	s.o.Logger.Info("appraised", "device", e.d.Name, "status", r.Status.String(), "reasons", len(r.Reasons))
	return true
}

// withoutEAR is r as a device's state keeps it once the store has it:
// without its signed EAR (≈ 2.5 KB, more than the rest of the state),
// which the API reads from the store (the device's latest record).
func withoutEAR(r *verifier.Result) *verifier.Result {
	if r == nil || len(r.EAR) == 0 {
		return r
	}
	c := *r
	c.EAR = nil
	return &c
}

// appraise runs the device's appraisal. A panic in it — a bug some
// device's evidence reached — fails that poll, logged with its stack,
// rather than ending the collector and every other device's polls.
func (s *Scheduler) appraise(ctx context.Context, e *entry) (r *verifier.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.o.Logger.Error("appraisal panicked: the poll failed", "device", e.d.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r, err = nil, fmt.Errorf("internal error appraising the device (logged): %v", p)
		}
	}()
	return appraiseTarget(ctx, e.d.Verifier, e.d.Target)
}

// appraiseTarget is the appraisal a poll runs (a test's panics replace it).
var appraiseTarget = func(ctx context.Context, v *verifier.Verifier, t verifier.Target) (*verifier.Result, error) {
	return v.AppraiseTarget(ctx, t)
}

// Event is a change of a device's state: its verdict changed (Kind
// "verdict", Status the new one, Previous the one before, "" at the first
// appraisal), it rebooted and was re-attested ("reboot"), an on-demand
// re-attestation superseded its results ("superseded"), or it became
// unreachable or reachable again ("unreachable", "reachable").
type Event struct {
	Kind     string    `json:"kind"`
	Device   string    `json:"device"`
	Status   string    `json:"status,omitempty"`
	Previous string    `json:"previous,omitempty"`
	Reasons  []string  `json:"reasons,omitempty"`
	Error    string    `json:"error,omitempty"`
	Time     time.Time `json:"time"`
}

// publish sends the events of a state change to the subscribers (s.mu
// held) and returns them. A subscriber that does not keep up misses
// events rather than holding up the polls (Options.Outbox misses none).
func (s *Scheduler) publish(prev, cur State, onDemand bool) []Event {
	var evs []Event
	now := time.Now()
	switch {
	case cur.Unreachable != "" && prev.Unreachable == "":
		evs = append(evs, Event{Kind: "unreachable", Device: cur.Name, Error: cur.Unreachable, Time: now})
	case cur.Unreachable == "" && prev.Unreachable != "":
		evs = append(evs, Event{Kind: "reachable", Device: cur.Name, Time: now})
	}
	if r := cur.Result; r != nil && cur.Unreachable == "" && r != prev.Result {
		before := ""
		if prev.Result != nil {
			before = prev.Result.Status.String()
		}
		switch {
		case r.Rebooted:
			evs = append(evs, Event{Kind: "reboot", Device: cur.Name, Status: r.Status.String(), Time: now})
		case onDemand && prev.Result != nil:
			// The results before are marked superseded in the store.
			evs = append(evs, Event{Kind: "superseded", Device: cur.Name, Status: r.Status.String(), Previous: prev.Result.Status.String(), Time: now})
		}
		if before != r.Status.String() {
			evs = append(evs, Event{Kind: "verdict", Device: cur.Name, Status: r.Status.String(), Previous: before, Reasons: r.Reasons, Time: now})
		}
	}
	for _, ev := range evs {
		for ch := range s.subs {
			select {
			case ch <- ev:
			default:
			}
		}
	}
	return evs
}

// Subscribe returns a channel of the events from now on, closed when ctx
// ends; a subscriber that falls behind misses events.
func (s *Scheduler) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 64)
	s.mu.Lock()
	s.subs[ch] = true
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		close(ch)
		s.mu.Unlock()
	})
	return ch
}

// Devices returns every device's state, by name. With leases, the
// devices another collector holds are as the store has them.
func (s *Scheduler) Devices() []State {
	latest := s.othersLatest()
	s.mu.Lock()
	out := make([]State, 0, len(s.devices))
	for _, e := range s.devices {
		out = append(out, s.stateOf(e, latest))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b State) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// othersLatest is, with leases, the store's latest result of every
// device (those another collector holds are shown as it has them); nil
// without.
func (s *Scheduler) othersLatest() map[string]store.Record {
	if s.o.Leases == nil || s.o.Store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	latest, _ := s.o.Store.Latest(ctx)
	return latest
}

// stateOf is e's state as the API shows it (s.mu held).
func (s *Scheduler) stateOf(e *entry, latest map[string]store.Record) State {
	if latest != nil && !s.o.Leases.Holds(e.d.Name) {
		return elsewhere(e.state, latest[e.d.Name])
	}
	return e.state
}

// tally counts the devices by key of their state, as the API shows them
// (with leases, where Scheduler.counts does not apply: the devices others
// hold are as the store has them).
func tally[K comparable](s *Scheduler, key func(*State) K) map[K]int {
	latest := s.othersLatest()
	out := map[K]int{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.devices {
		st := s.stateOf(e, latest)
		out[key(&st)]++
	}
	return out
}

// elsewhere is the state of a device another collector holds: its
// latest stored result (none yet: pending), not this collector's view.
func elsewhere(st State, rec store.Record) State {
	st.Unreachable, st.Result, st.Collector, st.LastPoll = "", nil, "", time.Time{}
	if rec.ID != 0 {
		st.Result, st.Collector, st.LastPoll = rec.Result(), rec.Collector, rec.Time
	}
	return st
}

// Names returns the names of the devices polled, sorted.
func (s *Scheduler) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.devices))
}

// Posture counts the devices by state: their latest verdict
// ("affirming", "warning", "contraindicated", "none"), "unreachable", or
// "pending" before the first poll ends.
func (s *Scheduler) Posture() map[string]int {
	if s.o.Leases != nil {
		return tally(s, (*State).posture)
	}
	out := map[string]int{}
	s.mu.Lock()
	for k, n := range s.counts {
		out[k[1]] += n
	}
	s.mu.Unlock()
	return out
}

// posture is the state Posture counts the device under.
func (st *State) posture() string {
	switch {
	case st.Unreachable != "":
		return "unreachable"
	case st.Result == nil:
		return "pending"
	}
	return st.Result.Status.String()
}

// Queued is the number of polls that are due and wait for a slot (the
// MaxInFlight bound): a queue that grows means the collector falls
// behind its intervals.
func (s *Scheduler) Queued() int { return int(s.queued.Load()) }

// PostureByPolicy counts the devices by policy set and state (as
// Posture).
func (s *Scheduler) PostureByPolicy() map[[2]string]int {
	if s.o.Leases != nil {
		return tally(s, func(st *State) [2]string { return [2]string{st.Policy, st.posture()} })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.counts)
}

// Device returns one device's state (with leases, as the store has it
// when another collector holds the device).
func (s *Scheduler) Device(name string) (State, bool) {
	s.mu.Lock()
	e, ok := s.devices[name]
	var st State
	if ok {
		st = e.state
	}
	s.mu.Unlock()
	if ok && s.o.Leases != nil && s.o.Store != nil && !s.o.Leases.Holds(name) {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		rec, _, _ := s.o.Store.Last(ctx, name)
		cancel()
		st = elsewhere(st, rec)
	}
	return st, ok
}

// History is the device's stored results, newest first.
func (s *Scheduler) History(ctx context.Context, name string, limit int) ([]store.Record, error) {
	if s.o.Store == nil {
		return nil, fmt.Errorf("no store")
	}
	return s.o.Store.History(ctx, name, limit)
}

// Attest polls the device now (the next poll starts at once, or waits for
// the one in flight) and returns its state after it.
func (s *Scheduler) Attest(ctx context.Context, name string) (State, error) {
	s.mu.Lock()
	e, ok := s.devices[name]
	s.mu.Unlock()
	if !ok {
		return State{}, fmt.Errorf("no device %q", name)
	}
	if s.o.Leases != nil && !s.o.Leases.Holds(name) {
		return State{}, fmt.Errorf("%q: %w", name, ErrElsewhere)
	}
	done := make(chan struct{})
	s.mu.Lock()
	switch {
	case s.done || e.stopped:
		close(done)
	default:
		e.waiting = append(e.waiting, done)
		switch {
		case e.ready:
			s.promote(e)
		case !e.polling:
			s.schedule(e, time.Now())
		}
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return State{}, ctx.Err()
	}
	st, _ := s.Device(name)
	return st, nil
}
