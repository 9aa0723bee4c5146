// Package lease shares a fleet between collectors on one PostgreSQL
// store: each device is leased to one collector at a time, for a TTL the
// holder renews every third of it. A collector that dies stops renewing;
// its leases expire and the others take them (within TTL and a third),
// resuming each device from the state and due time its last result left
// in the store. The collectors alive split the fleet evenly: one that
// joins gets its share as the others give up their excess.
//
// No device is polled by two collectors at once: a poll starts only
// under a lease with time left, ends (its context's deadline) before the
// lease could expire unrenewed, and its result is kept only if the lease
// is still the same one (store.Saved.Lease).
package lease

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/openriv/riv/collector/store"
)

// Options configure a Manager.
type Options struct {
	Store *store.Store // PostgreSQL
	// ID names this collector; unique among those sharing the store.
	ID string
	// TTL is how long a lease lasts unrenewed (default 30 s): a dead
	// collector's devices are taken over within TTL×4/3.
	TTL time.Duration
	// Devices returns the devices this collector can poll (its
	// inventory).
	Devices func() []string
	// Acquired is told of each device this collector takes (from the
	// store: when it is due, zero when unknown).
	Acquired func(device string, due time.Time)
	Logger   *slog.Logger
}

// Manager holds this collector's leases.
type Manager struct {
	o     Options
	mu    sync.Mutex
	held  map[string]*hold
	known map[string]bool // devices whose lease row exists
}

type hold struct {
	epoch int64
	until time.Time // local, conservative: TTL from before the renewal was sent
	busy  int       // polls under way
}

// New returns a manager; Run takes and keeps the leases.
func New(o Options) *Manager {
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{o: o, held: map[string]*hold{}, known: map[string]bool{}}
}

// Run renews and takes leases every TTL/3 until ctx ends. Leave, once
// the polls have stopped, hands the devices over at once.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.o.TTL / 3)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, m.o.TTL/3)
		if err := m.Round(rctx); err != nil && ctx.Err() == nil {
			m.o.Logger.Warn("leases", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Leave gives up every lease and the collector's place in the shares:
// for a collector stopping, after its polls ended (a poll still under
// way could otherwise overlap the next holder's).
func (m *Manager) Leave() {
	m.mu.Lock()
	m.held = map[string]*hold{}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.o.Store.Leave(ctx, m.o.ID); err != nil {
		m.o.Logger.Warn("leases: release", "err", err)
	}
}

// Round is one renewal: heartbeat, make the inventory leasable, renew
// what is held, give up the excess over a fair share, take free devices
// up to it.
func (m *Manager) Round(ctx context.Context) error {
	st := m.o.Store
	live, err := st.Heartbeat(ctx, m.o.ID, m.o.TTL)
	if err != nil {
		return err
	}
	inv := m.o.Devices()
	var fresh []string
	m.mu.Lock()
	for _, d := range inv {
		if !m.known[d] {
			fresh = append(fresh, d)
		}
	}
	m.mu.Unlock()
	if len(fresh) > 0 {
		if err := st.AddLeases(ctx, fresh); err != nil {
			return err
		}
		m.mu.Lock()
		for _, d := range fresh {
			m.known[d] = true
		}
		m.mu.Unlock()
	}

	sent := time.Now()
	renewed, err := st.Renew(ctx, m.o.ID, m.o.TTL)
	if err != nil {
		return err
	}
	inInv := make(map[string]bool, len(inv))
	for _, d := range inv {
		inInv[d] = true
	}
	m.mu.Lock()
	next := make(map[string]*hold, len(renewed))
	var stray []string // held, but not ours to poll (gone from the inventory)
	for _, g := range renewed {
		if !inInv[g.Device] {
			stray = append(stray, g.Device)
			continue
		}
		h := m.held[g.Device]
		if h == nil || h.epoch != g.Epoch {
			h = &hold{epoch: g.Epoch}
		}
		h.until = sent.Add(m.o.TTL)
		next[g.Device] = h
	}
	m.held = next
	m.mu.Unlock()

	total, _, err := st.LeaseCounts(ctx)
	if err != nil {
		return err
	}
	share := (total + max(live, 1) - 1) / max(live, 1)
	m.mu.Lock()
	excess := len(m.held) - share
	var give []string
	if excess > 0 {
		// The last by name, not busy: the same ones each round.
		names := make([]string, 0, len(m.held))
		for d, h := range m.held {
			if h.busy == 0 {
				names = append(names, d)
			}
		}
		sort.Strings(names)
		give = names[max(0, len(names)-excess):]
		for _, d := range give {
			delete(m.held, d)
		}
	}
	want := share - len(m.held)
	m.mu.Unlock()
	if err := st.Release(ctx, m.o.ID, append(give, stray...)); err != nil {
		return err
	}
	if want <= 0 {
		return nil
	}
	sent = time.Now()
	got, err := st.Claim(ctx, m.o.ID, m.o.TTL, inv, want)
	if err != nil {
		return err
	}
	m.mu.Lock()
	for _, g := range got {
		m.held[g.Device] = &hold{epoch: g.Epoch, until: sent.Add(m.o.TTL)}
	}
	m.mu.Unlock()
	if len(got) > 0 {
		m.o.Logger.Info("leases taken", "devices", len(got), "held", len(m.Held()), "collectors", live)
	}
	if m.o.Acquired != nil {
		for _, g := range got {
			m.o.Acquired(g.Device, g.NextAt)
		}
	}
	return nil
}

// Begin starts a poll of the device if this collector holds its lease
// with time left: the lease to save the result under, and when the poll
// must be over. End ends it.
func (m *Manager) Begin(device string) (*store.Lease, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.held[device]
	if h == nil || time.Until(h.until) < m.o.TTL/4 {
		return nil, time.Time{}, false
	}
	h.busy++
	// A margin for the save's round trip before the lease could lapse.
	return &store.Lease{Owner: m.o.ID, Epoch: h.epoch}, h.until.Add(-m.o.TTL / 10), true
}

// End ends a poll Begin started.
func (m *Manager) End(device string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.held[device]; h != nil && h.busy > 0 {
		h.busy--
	}
}

// Holds says whether this collector holds the device's lease now.
func (m *Manager) Holds(device string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.held[device]
	return h != nil && time.Now().Before(h.until)
}

// Held returns the devices whose lease this collector holds.
func (m *Manager) Held() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.held))
	for d := range m.held {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}
