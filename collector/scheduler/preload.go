package scheduler

import (
	"context"
	"time"

	"github.com/openriv/riv/collector/store"
)

// Preloaded is what Run restores from a store — each device's latest
// result and its verifier's state — read in the background from the
// moment Preload is called (Options.Preloaded; Run calls it itself
// otherwise). A large fleet's start has other work meanwhile:
// `riv-collector serve` builds 100,000 configured devices in about a
// second, a second the reads no longer wait for on a second core.
type Preloaded struct {
	results read[map[string]store.Record]
	states  read[map[string][]byte]
}

// Preload starts reading st's latest results, then its verifier states
// (one after the other: a SQLite store has one connection).
func Preload(ctx context.Context, st *store.Store) *Preloaded {
	p := &Preloaded{results: read[map[string]store.Record]{done: make(chan struct{})}, states: read[map[string][]byte]{done: make(chan struct{})}}
	go func() {
		p.results.run(func() (map[string]store.Record, error) { return st.Latest(ctx) })
		p.states.run(func() (map[string][]byte, error) { return st.States(ctx) })
	}()
	return p
}

// read is one read of the store, done in the background.
type read[T any] struct {
	done chan struct{} // closed when read
	v    T
	err  error
	took time.Duration
}

func (r *read[T]) run(f func() (T, error)) {
	start := time.Now()
	r.v, r.err = f()
	r.took = time.Since(start)
	close(r.done)
}

// take waits for the read and hands its value over: the read keeps no
// reference to it (Run's alone, the size of the fleet).
func (r *read[T]) take(ctx context.Context) (T, time.Duration, error) {
	var zero T
	select {
	case <-r.done:
		v := r.v
		r.v = zero
		return v, r.took, r.err
	case <-ctx.Done():
		return zero, 0, ctx.Err()
	}
}
