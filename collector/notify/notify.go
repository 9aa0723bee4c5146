// Package notify delivers the fleet's state changes to webhooks: each
// event is kept in the store's outbox before it is sent, so none is lost
// across a restart; each POST carries an HMAC-SHA256 of its body with the
// shared secret, and a failed delivery is retried with exponential
// backoff, for a day.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
)

// Header names of a delivery.
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body
	// with the webhook's secret.
	SignatureHeader = "X-RIV-Signature"
	// DeliveryHeader is the outbox id: a receiver that saw it already
	// (a retry after a lost answer) can drop the duplicate.
	DeliveryHeader = "X-RIV-Delivery"
)

// Webhook delivers events to one URL.
type Webhook struct {
	URL    string
	Secret []byte
	Store  *store.Store
	Client *http.Client // default: 10 s timeout
	Logger *slog.Logger
	// Every is how often due deliveries are attempted (default 1 s).
	Every time.Duration

	nudge chan struct{}
}

// Keep stores events in the outbox (scheduler.Options.Outbox): once it
// returns they are delivered even if the collector is killed at once.
func (w *Webhook) Keep(ctx context.Context, evs []scheduler.Event) {
	for _, ev := range evs {
		body, _ := json.Marshal(ev)
		if _, err := w.Store.Enqueue(ctx, w.URL, body); err != nil && w.Logger != nil {
			w.Logger.Error("webhook: keep the event", "err", err)
		}
	}
	select {
	case w.nudge <- struct{}{}:
	default:
	}
}

// New returns a webhook (the outbox in st).
func New(url string, secret []byte, st *store.Store, log *slog.Logger) *Webhook {
	return &Webhook{URL: url, Secret: secret, Store: st, Logger: log, nudge: make(chan struct{}, 1)}
}

// Run delivers the outbox until ctx ends: what Keep adds at once, what
// failed when due.
func (w *Webhook) Run(ctx context.Context) {
	if w.Client == nil {
		w.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Every == 0 {
		w.Every = time.Second
	}
	tick := time.NewTicker(w.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.nudge:
			w.deliver(ctx)
		case <-tick.C:
			w.deliver(ctx)
		}
	}
}

// deliver attempts every due notification.
func (w *Webhook) deliver(ctx context.Context) {
	due, err := w.Store.Due(ctx, time.Now(), 100)
	if err != nil {
		if ctx.Err() == nil {
			w.Logger.Error("webhook: outbox", "err", err)
		}
		return
	}
	for _, m := range due {
		if err := w.post(ctx, m); err != nil {
			backoff := time.Second << min(m.Attempts, 9) // up to about 8.5 minutes
			giveUp := m.Attempts >= 200                  // with the cap, about a day
			w.Logger.Warn("webhook: delivery failed", "url", w.URL, "id", m.ID, "attempt", m.Attempts+1, "err", err, "retry_in", backoff)
			w.Store.Failed(ctx, m.ID, time.Now().Add(backoff), giveUp, err.Error())
			continue
		}
		w.Store.Delivered(ctx, m.ID)
	}
}

func (w *Webhook) post(ctx context.Context, m store.Message) error {
	req, err := http.NewRequestWithContext(ctx, "POST", m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DeliveryHeader, strconv.FormatInt(m.ID, 10))
	req.Header.Set(SignatureHeader, Sign(w.Secret, m.Body))
	resp, err := w.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// Sign is the signature header's value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header's value (what a receiver does).
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}
