package scheduler

import (
	"context"
	"time"

	"github.com/openriv/riv/collector/store"
)

// Preloaded is what Run restores from a store — each device's latest
// result and its verifier's state — read in the background from the
// moment Preload is called (Options.Preloaded). A large fleet's start
// has other work meanwhile: `riv-collector serve` builds 100,000
// configured devices in about a second, a second the reads no longer
// wait for on a second core.
type Preloaded struct {
	results, states       chan struct{} // closed when read
	latest                map[string]store.Record
	stored                map[string][]byte
	errLatest, errStates  error
	tookLatest, tookState time.Duration
}

// Preload starts reading st's latest results, then its verifier states
// (one after the other: a SQLite store has one connection).
func Preload(ctx context.Context, st *store.Store) *Preloaded {
	p := &Preloaded{results: make(chan struct{}), states: make(chan struct{})}
	go func() {
		start := time.Now()
		p.latest, p.errLatest = st.Latest(ctx)
		p.tookLatest = time.Since(start)
		close(p.results)
		start = time.Now()
		p.stored, p.errStates = st.States(ctx)
		p.tookState = time.Since(start)
		close(p.states)
	}()
	return p
}

// latest returns the store's latest results, read now or preloaded.
func (s *Scheduler) latest(ctx context.Context) (map[string]store.Record, time.Duration, error) {
	if p := s.o.Preloaded; p != nil {
		select {
		case <-p.results:
			latest := p.latest
			p.latest = nil // Run's alone: not kept by a caller's reference
			return latest, p.tookLatest, p.errLatest
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	start := time.Now()
	latest, err := s.o.Store.Latest(ctx)
	return latest, time.Since(start), err
}

// states returns the store's verifier states, read now or preloaded.
func (s *Scheduler) states(ctx context.Context) (map[string][]byte, time.Duration, error) {
	if p := s.o.Preloaded; p != nil {
		select {
		case <-p.states:
			stored := p.stored
			p.stored = nil
			return stored, p.tookState, p.errStates
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	start := time.Now()
	states, err := s.o.Store.States(ctx)
	return states, time.Since(start), err
}
