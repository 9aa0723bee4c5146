package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// mitm sits between the verifier and a real agent session and changes
// what the device says, as an attacker on the path (or a lying agent)
// would.
type mitm struct {
	*netconf.Client
	challenge func(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]netconf.Quote, error)
	logs      func(l *eventlog.Log, t string) *eventlog.Log
}

func (m *mitm) Challenge(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]netconf.Quote, error) {
	if m.challenge != nil {
		return m.challenge(ctx, nonce, sel)
	}
	return m.Client.Challenge(ctx, nonce, sel)
}

func (m *mitm) Logs(ctx context.Context, t string, after *uint64) (*eventlog.Log, uint32, error) {
	l, up, err := m.Client.Logs(ctx, t, after)
	if err == nil && m.logs != nil {
		l = m.logs(l, t)
	}
	return l, up, err
}

// Collect is the verifier's pipelined path: with a challenge hook the
// MITM answers the challenge itself and fetches the logs after it;
// otherwise the real pipelined exchange runs and its logs are altered.
func (m *mitm) Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, reqs []netconf.LogRequest) ([]netconf.Quote, []netconf.LogResult, error) {
	if m.challenge != nil {
		q, err := m.challenge(ctx, nonce, sel)
		if err != nil {
			return nil, nil, err
		}
		out := make([]netconf.LogResult, len(reqs))
		for k, r := range reqs {
			out[k].Log, out[k].UpTime, out[k].Err = m.Logs(ctx, r.Type, r.After)
		}
		return q, out, nil
	}
	q, out, err := m.Client.Collect(ctx, nonce, sel, reqs)
	for k := range out {
		if out[k].Err == nil && m.logs != nil {
			out[k].Log = m.logs(out[k].Log, reqs[k].Type)
		}
	}
	return q, out, err
}

func dial(t *testing.T, d *device.Device) *netconf.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := netconf.DialSSH(ctx, d.SSHAddr, d.User, d.SSHClientKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEvidenceTampering(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()

	// A second router on swtpm, with its own IAK from the same maker.
	sw := tpmtest.StartSwtpm(t, "sha256", "sha384")
	other, err := device.Start(ctx, device.Options{TPM: sw.Spec(), Serial: "RTR-0099", ManufacturerCA: e.mfr})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherClient := dial(t, other)

	var old []netconf.Quote
	{
		c := dial(t, d)
		q, err := c.Challenge(ctx, []byte("an old nonce of some earlier poll"), []pcr.Selection{{Bank: 0x000B, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}})
		if err != nil {
			t.Fatal(err)
		}
		old = q
	}
	cases := []struct {
		name   string
		m      func(c *netconf.Client) *mitm
		status ear.TrustTier
		reason string
	}{
		{"replayed quote", func(c *netconf.Client) *mitm {
			return &mitm{Client: c, challenge: func(context.Context, []byte, []pcr.Selection) ([]netconf.Quote, error) { return old, nil }}
		}, ear.TrustTierContraindicated, "nonce"},
		{"quote by another device's IAK", func(c *netconf.Client) *mitm {
			return &mitm{Client: c, challenge: func(ctx context.Context, n []byte, s []pcr.Selection) ([]netconf.Quote, error) {
				return otherClient.Challenge(ctx, n, s)
			}}
		}, ear.TrustTierContraindicated, "signature"},
		{"truncated log", func(c *netconf.Client) *mitm {
			return &mitm{Client: c, logs: func(l *eventlog.Log, t string) *eventlog.Log {
				if t == "bios" {
					l.Events = l.Events[:len(l.Events)-3]
				}
				return l
			}}
		}, ear.TrustTierContraindicated, "do not replay"},
		{"log that does not replay", func(c *netconf.Client) *mitm {
			return &mitm{Client: c, logs: func(l *eventlog.Log, t string) *eventlog.Log {
				if t == "netequip_boot" {
					// Claim that a file had the hash of another, signed one.
					e := l.Events[2]
					forged := eventlog.IMAEntryFor(e.PCR, alg.SHA256, l.Events[3].IMA.FileHash, e.IMA.FileName, nil, []alg.ID{alg.SHA1})
					forged.Seq = e.Seq
					l.Events[2] = forged
				}
				return l
			}}
		}, ear.TrustTierContraindicated, "do not replay"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.m(dial(t, d))
			r, err := e.v.Appraise(ctx, d.Serial+"/"+c.name, s, s.HostKey)
			if err != nil {
				t.Fatalf("Appraise() = %v; bad evidence must be a result", err)
			}
			if r.Status != c.status || !strings.Contains(strings.Join(r.Reasons, "\n"), c.reason) {
				t.Errorf("status %v, reasons:\n%s\nwant %v with %q", r.Status, strings.Join(r.Reasons, "\n"), c.status, c.reason)
			}
		})
	}
}

// TestAgentKilledMidReply: the agent dies while the verifier waits for
// logs. The appraisal fails with an error (the verifier could not do its
// job), nothing hangs, and a restarted agent appraises cleanly.
func TestAgentKilledMidReply(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := start(t, e, router.DefaultImage("2.0"))
	c := dial(t, d)
	s := &mitm{Client: c, logs: nil}
	s.challenge = func(ctx context.Context, n []byte, sel []pcr.Selection) ([]netconf.Quote, error) {
		q, err := c.Challenge(ctx, n, sel)
		d.Close() // the agent is gone before the logs are asked for
		return q, err
	}
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := e.v.Appraise(actx, d.Serial, s, c.HostKey); err == nil {
		t.Error("Appraise() with a dead agent succeeded")
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("dead agent noticed after %v", time.Since(start))
	}
	d2 := startWithOpts(t, e, device.Options{Image: router.DefaultImage("2.0"), Serial: d.Serial})
	defer d2.Close()
	if r := e.appraiseSSH(t, d2); r.Status != ear.TrustTierAffirming {
		t.Errorf("restarted agent: %v %v", r.Status, r.Reasons)
	}
}

func startWithOpts(t *testing.T, e *env, o device.Options) *device.Device {
	t.Helper()
	o.ManufacturerCA = e.mfr
	d, err := device.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMeasuredBetweenQuoteAndLogs has the device measure files after it
// quoted but before the collector reads the log, as a busy router does.
// The entries the quote does not cover are neither a failure nor judged
// yet; the next poll picks them up, and what it finds stays in every later
// result.
func TestMeasuredBetweenQuoteAndLogs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	c := dial(t, d)
	racing := 0
	m := &mitm{Client: c, challenge: func(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]netconf.Quote, error) {
		q, err := c.Challenge(ctx, nonce, sel)
		for i := range racing {
			if err := d.MeasureFile(ctx, fmt.Sprintf("/tmp/.x/late-%d", i), []byte{byte(i)}); err != nil {
				t.Error(err)
			}
		}
		return q, err
	}}
	steps := []struct {
		racing int
		status ear.TrustTier
		names  int // late files named in the reasons
	}{
		{0, ear.TrustTierAffirming, 0},
		{3, ear.TrustTierAffirming, 0}, // measured after the quote: not covered yet
		{0, ear.TrustTierWarning, 3},   // now covered and unknown
		{0, ear.TrustTierWarning, 3},   // nothing new: still reported
		{2, ear.TrustTierWarning, 3},
		{0, ear.TrustTierWarning, 5},
		// A burst longer than a page of entries: still not a failure.
		{200, ear.TrustTierWarning, 5},
		{0, ear.TrustTierWarning, 100}, // covered now; the names listed are bounded (maxNames)
	}
	for i, s := range steps {
		racing = s.racing
		r, err := e.v.Appraise(ctx, d.Serial, m, c.HostKey)
		if err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
		reasons := strings.Join(r.Reasons, "\n")
		if r.Status != s.status || strings.Count(reasons, "/tmp/.x/late-") != s.names {
			t.Errorf("poll %d: status %v, reasons:\n%s\nwant %v naming %d late files", i, r.Status, reasons, s.status, s.names)
		}
	}
}

// TestBusyTPMRetried is the collector half of item E2: a device whose TPM
// refuses a quote (resource-denied, its rate limit reached) is challenged
// again after a backoff, and the poll succeeds.
func TestBusyTPMRetried(t *testing.T) {
	e := newEnv(t)
	d := startWithOpts(t, e, device.Options{Image: router.DefaultImage("2.0"), QuotesPerSecond: 4})
	defer d.Close()
	c := dial(t, d)
	// Spend the device's burst for this session first.
	for i := range 8 {
		c.Challenge(context.Background(), []byte(fmt.Sprintf("spend the bucket %d", i)), []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0}}})
	}
	start := time.Now()
	r, err := e.v.Appraise(context.Background(), d.Serial, c, c.HostKey)
	if err != nil {
		t.Fatalf("Appraise() = %v; a busy TPM must be retried", err)
	}
	if r.Status != ear.TrustTierAffirming || time.Since(start) < 50*time.Millisecond {
		t.Errorf("status %v after %v: %v", r.Status, time.Since(start), r.Reasons)
	}
}
