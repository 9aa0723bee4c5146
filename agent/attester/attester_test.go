package attester

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
)

type noLogs struct{}

func (noLogs) Log(context.Context, LogType) (*Entries, error) {
	return &Entries{Log: &eventlog.Log{Format: eventlog.FormatTCG}}, nil
}

func newAttester(t *testing.T, rate float64, burst int) (*Attester, *tpm.Key) {
	t.Helper()
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	k, err := tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(ctx, Config{TPM: tp, Logs: noLogs{}, QuotesPerSecond: rate, QuoteBurst: burst,
		Certificates: []Certificate{{Name: "iak", Type: CertIAK, Key: k}}})
	if err != nil {
		t.Fatal(err)
	}
	return a, k
}

var sel = []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2}}}

// TestCoalescing: identical concurrent challenges share one TPM2_Quote;
// they all get the same, valid answer.
func TestCoalescing(t *testing.T) {
	a, k := newAttester(t, 1, 1) // one token: a second real quote would be refused
	nonce := []byte("0123456789abcdef0123456789abcdef")
	var wg sync.WaitGroup
	res := make([][]Response, 8)
	errs := make([]error, 8)
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = a.Attest(context.Background(), Challenge{Nonce: nonce, Selection: sel})
		}(i)
	}
	wg.Wait()
	ok := 0
	var first []byte
	for i := range res {
		if errs[i] == nil {
			ok++
			if first == nil {
				first = res[i][0].QuoteData
			} else if string(first) != string(res[i][0].QuoteData) {
				t.Errorf("response %d differs: two TPM quotes for one coalesced challenge", i)
			}
			if _, err := quote.Verify(k.Public.Key, res[i][0].QuoteData, res[i][0].QuoteSignature, quote.Options{Nonce: nonce, PCRs: res[i][0].UnsignedPCRs}); err != nil {
				t.Errorf("response %d: %v", i, err)
			}
		}
	}
	// At least the first caller is served, and every caller that joined
	// it got the same quote instead of spending a token.
	if ok == 0 {
		t.Fatalf("no challenge answered: %v", errs)
	}
	// A different nonce right after needs its own quote: rate-limited.
	_, err := a.Attest(context.Background(), Challenge{Nonce: []byte("another nonce of thirty-two byte"), Selection: sel})
	var re *RPCError
	if !errors.As(err, &re) || re.Tag != "resource-denied" {
		t.Errorf("second distinct challenge = %v, want resource-denied", err)
	}
}

func TestRateLimitRefills(t *testing.T) {
	a, _ := newAttester(t, 1000, 1)
	now := time.Now()
	a.now = func() time.Time { return now }
	if _, err := a.Attest(context.Background(), Challenge{Nonce: []byte("n1"), Selection: sel}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(context.Background(), Challenge{Nonce: []byte("n2"), Selection: sel}); err == nil {
		t.Error("second quote in the same instant with burst 1 succeeded")
	}
	now = now.Add(10 * time.Millisecond)
	if _, err := a.Attest(context.Background(), Challenge{Nonce: []byte("n3"), Selection: sel}); err != nil {
		t.Errorf("after the bucket refilled: %v", err)
	}
}

// TestFairQueue is item E2: twenty clients send challenges as fast as they
// can while an operator's verifier polls; the verifier is served every
// time, because clients take turns at the TPM and a full queue refuses
// the busiest client, not the newcomer. Under the single first-come
// bucket this replaced, the verifier was refused.
func TestFairQueue(t *testing.T) {
	for _, c := range []struct {
		name       string
		rate       float64
		burst      int
		mustRefuse bool // the queue itself, not the rate limit, is the bound
	}{{"default rate limits", 20, 40, false}, {"no rate limit, full queue", 1e6, 1 << 20, true}} {
		t.Run(c.name, func(t *testing.T) { fairQueue(t, c.rate, c.burst, c.mustRefuse) })
	}
}

func fairQueue(t *testing.T, rate float64, burst int, mustRefuse bool) {
	a, _ := newAttester(t, rate, burst)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var served, refused sync.Map
	for i := range 20 {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				for range 4 { // several in flight per hammering client
					go func(n int) {
						_, err := a.Attest(ctx, Challenge{Nonce: []byte(fmt.Sprintf("hammer %d %d", i, n)), Selection: sel, Client: fmt.Sprintf("hammer-%d", i)})
						if err == nil {
							served.Store(i, true)
						} else {
							refused.Store(i, true)
						}
					}(n)
				}
				a.Attest(ctx, Challenge{Nonce: []byte(fmt.Sprintf("hammer %d %d x", i, n)), Selection: sel, Client: fmt.Sprintf("hammer-%d", i)})
			}
		}(i)
	}
	time.Sleep(200 * time.Millisecond) // the queue is full by now
	for k := range 10 {
		start := time.Now()
		if _, err := a.Attest(context.Background(), Challenge{Nonce: []byte(fmt.Sprintf("verifier poll %d", k)), Selection: sel, Client: "verifier"}); err != nil {
			t.Errorf("verifier poll %d: %v", k, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("verifier poll %d waited %v", k, d)
		}
	}
	cancel()
	wg.Wait()
	n := 0
	refused.Range(func(any, any) bool { n++; return true })
	if mustRefuse && n == 0 {
		t.Error("no hammering client was ever refused: the queue was not under pressure")
	}
}
