package notify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
)

func TestSignVerify(t *testing.T) {
	secret, body := []byte("0123456789abcdef"), []byte(`{"kind":"verdict"}`)
	sig := Sign(secret, body)
	if !Verify(secret, body, sig) {
		t.Fatal("a signature does not verify")
	}
	for _, bad := range []struct{ secret, body []byte }{{[]byte("another secret!!"), body}, {secret, []byte(`{"kind":"reboot"}`)}} {
		if Verify(bad.secret, bad.body, sig) {
			t.Errorf("verified with %q / %q", bad.secret, bad.body)
		}
	}
}

// TestOutbox: a kept event is delivered once the receiver answers 2xx,
// retried before, and not delivered twice.
func TestOutbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "riv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	calls, ok := 0, 0
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		ok++
	}))
	defer rx.Close()
	w := New(rx.URL, []byte("0123456789abcdef"), st, nil)
	w.Every = 10 * time.Millisecond
	w.Keep(ctx, []scheduler.Event{{Kind: "verdict", Device: "d", Status: "warning", Time: time.Now()}})
	go w.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := st.Pending(ctx); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not delivered within 10 s")
		}
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 || ok != 1 {
		t.Errorf("%d attempts, %d delivered; want 2 and 1", calls, ok)
	}
}
