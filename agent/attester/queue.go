package attester

import (
	"context"
	"sync"
	"time"
)

// queue puts the TPM's quotes in order: one at a time, and fair between
// clients. Each client (a NETCONF session, a RESTCONF peer) has its own
// FIFO of waiting quotes; the TPM serves the clients in turn, so one that
// sends challenges as fast as it can waits behind everyone else's next
// quote instead of taking every turn (the kernel's resource manager and
// tpm2-abrmd queue commands the same way, per connection). Waiting is
// bounded: a client with maxPerClient quotes waiting is refused at once
// (resource-denied); when the whole queue holds maxTotal, a newcomer takes
// the place of the newest quote of the client with the most waiting (that
// one is refused), so a few busy clients cannot lock everyone else out;
// and a token bucket per client bounds how often it may ask at all.
type queue struct {
	mu      sync.Mutex
	clients map[string]*client
	ring    []string // clients with waiting quotes, in turn order
	busy    bool
	waiting int

	maxPerClient, maxTotal int
	rate                   float64 // quotes per second per client
	burst                  float64
	now                    func() time.Time
}

type client struct {
	waiting []*ticket
	tokens  float64
	last    time.Time
}

// ticket is one waiting quote: turn is closed when it is its turn, or
// when it was refused to make room (denied).
type ticket struct {
	turn   chan struct{}
	denied bool
}

// maxClients bounds the per-client records kept (idle ones are dropped).
const maxClients = 4096

func newQueue(rate float64, burst, perClient, total int, now func() time.Time) *queue {
	return &queue{clients: map[string]*client{}, rate: rate, burst: float64(burst), maxPerClient: perClient, maxTotal: total, now: now}
}

// errBusy is why a quote is refused before it waits.
type errBusy string

func (e errBusy) Error() string { return string(e) }

// acquire waits for name's turn at the TPM; release must be called after
// the quote. An error means the quote is refused (the client asks too
// often, or too many quotes wait) or ctx ended while waiting.
func (q *queue) acquire(ctx context.Context, name string) (func(), error) {
	q.mu.Lock()
	c := q.clients[name]
	if c == nil {
		if len(q.clients) >= maxClients {
			q.forgetIdle()
		}
		c = &client{tokens: q.burst}
		q.clients[name] = c
	}
	now := q.now()
	c.tokens = min(q.burst, c.tokens+now.Sub(c.last).Seconds()*q.rate)
	c.last = now
	switch {
	case c.tokens < 1:
		q.mu.Unlock()
		return nil, errBusy("quote rate limit of this client reached; retry later")
	case len(c.waiting) >= q.maxPerClient:
		q.mu.Unlock()
		return nil, errBusy("this client already has quotes waiting for the TPM; retry later")
	case q.waiting >= q.maxTotal && !q.evictFor(c):
		q.mu.Unlock()
		return nil, errBusy("the TPM's quote queue is full; retry later")
	}
	c.tokens--
	t := &ticket{turn: make(chan struct{})}
	turn := t.turn
	c.waiting = append(c.waiting, t)
	if len(c.waiting) == 1 {
		q.ring = append(q.ring, name)
	}
	q.waiting++
	q.next()
	q.mu.Unlock()
	select {
	case <-turn:
		if t.denied {
			return nil, errBusy("the TPM's quote queue is full and this client had the most waiting; retry later")
		}
		return func() {
			q.mu.Lock()
			q.free()
			q.mu.Unlock()
		}, nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		select {
		case <-turn: // granted (or refused) meanwhile
			if !t.denied {
				q.free()
			}
		default:
			q.drop(name, t)
		}
		return nil, ctx.Err()
	}
}

// free gives the TPM back after a turn, to whoever is next (q.mu held).
func (q *queue) free() {
	q.busy = false
	q.next()
}

// next gives the TPM to the client whose turn it is (q.mu held).
func (q *queue) next() {
	if q.busy || len(q.ring) == 0 {
		return
	}
	name := q.ring[0]
	q.ring = q.ring[1:]
	c := q.clients[name]
	t := c.waiting[0]
	c.waiting = c.waiting[1:]
	if len(c.waiting) > 0 {
		q.ring = append(q.ring, name) // its next quote waits for the others
	}
	q.waiting--
	q.busy = true
	close(t.turn)
}

// evictFor makes room for a quote of c by refusing the newest quote of
// the client with the most waiting, if that is more than c has (q.mu
// held).
func (q *queue) evictFor(c *client) bool {
	var worst *client
	var worstName string
	for n, o := range q.clients {
		if len(o.waiting) > len(c.waiting)+1 && (worst == nil || len(o.waiting) > len(worst.waiting)) {
			worst, worstName = o, n
		}
	}
	if worst == nil {
		return false
	}
	t := worst.waiting[len(worst.waiting)-1]
	t.denied = true
	q.drop(worstName, t)
	close(t.turn)
	return true
}

// drop removes a waiting quote whose caller gave up (q.mu held).
func (q *queue) drop(name string, t *ticket) {
	c := q.clients[name]
	for i, w := range c.waiting {
		if w == t {
			c.waiting = append(c.waiting[:i:i], c.waiting[i+1:]...)
			q.waiting--
			break
		}
	}
	if len(c.waiting) == 0 {
		for i, n := range q.ring {
			if n == name {
				q.ring = append(q.ring[:i:i], q.ring[i+1:]...)
				break
			}
		}
	}
}

// forgetIdle drops the records of clients with nothing waiting (q.mu held).
func (q *queue) forgetIdle() {
	for n, c := range q.clients {
		if len(c.waiting) == 0 {
			delete(q.clients, n)
		}
	}
}
