// Package logsrc provides the device's measurement logs to the attester:
// from the kernel's securityfs files on a real device, or from memory for
// the simulated routers of the testbed and `riv-agent dev`.
package logsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// Files reads logs from files each time they are asked for: the kernel
// appends to the IMA log as it measures, so an entry measured after the
// agent started is served in the next log-retrieval. For IMA-format logs
// the per-bank files the kernel writes beside the log
// (binary_runtime_measurements_sha256, ...) add their template digests in
// those banks.
type Files struct {
	Paths map[attester.LogType]string
	// MaxSize bounds a log file read (default 256 MiB).
	MaxSize int64

	mu sync.Mutex
	// seen remembers when each entry was first read, per log: entries
	// keep their time across reads and a new one gets the time it appeared.
	seen map[attester.LogType][]time.Time
}

var _ attester.Source = (*Files)(nil)

// bankSuffixes are the kernel's per-bank IMA files (ima_fs.c: the log's
// name, "_", the hash algorithm's name).
var bankSuffixes = []struct {
	suffix string
	bank   alg.ID
}{{"_sha1", alg.SHA1}, {"_sha256", alg.SHA256}, {"_sha384", alg.SHA384}, {"_sha512", alg.SHA512}, {"_sm3", alg.SM3_256}}

// Log parses the current content of the log file of type t.
func (f *Files) Log(_ context.Context, t attester.LogType) (*attester.Entries, error) {
	p, ok := f.Paths[t]
	if !ok || p == "" {
		return nil, fmt.Errorf("no %s log configured", t)
	}
	max := f.MaxSize
	if max == 0 {
		max = 256 << 20
	}
	// securityfs reports size 0; the limit applies to what is read.
	raw, err := readLimited(p, max)
	if err != nil {
		return nil, err
	}
	var l *eventlog.Log
	if t == attester.LogBIOS {
		if l, err = eventlog.ParseTCG(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	} else if l, err = f.imaLog(p, raw, max); err != nil {
		return nil, err
	}
	return &attester.Entries{Log: l, Times: f.times(t, len(l.Events))}, nil
}

// imaLog parses an IMA-format log and merges in its per-bank files.
func (f *Files) imaLog(p string, raw []byte, max int64) (*eventlog.Log, error) {
	if len(raw) == 0 {
		// Nothing measured yet (a NOS log before its first entry).
		return &eventlog.Log{Format: eventlog.FormatIMA, Banks: []alg.ID{alg.SHA1}}, nil
	}
	l, err := eventlog.ParseIMABank(raw, alg.SHA1)
	if err != nil {
		if l, err = eventlog.ParseIMA(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, b := range bankSuffixes {
		if slices.Contains(l.Banks, b.bank) {
			continue
		}
		braw, err := readLimited(p+b.suffix, max)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		bl, err := eventlog.ParseIMABank(braw, b.bank)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p+b.suffix, err)
		}
		// The kernel may append between the two reads: merge the entries
		// both files have, which must be the same measurements.
		n := min(len(bl.Events), len(l.Events))
		for i := 0; i < n; i++ {
			e, be := &l.Events[i], &bl.Events[i]
			if e.PCR != be.PCR || string(e.Data) != string(be.Data) {
				return nil, fmt.Errorf("%s: entry %d differs from %s's", p+b.suffix, i, p)
			}
			e.Digests = append(e.Digests, be.Digests...)
		}
		l.Events = l.Events[:n]
		l.Banks = append(l.Banks, b.bank)
	}
	return l, nil
}

// times returns the first-read time of each of n entries.
func (f *Files) times(t attester.LogType, n int) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[attester.LogType][]time.Time{}
	}
	ts := f.seen[t]
	if n < len(ts) {
		// The log shrank: a new boot's log (or a rotated file).
		ts = nil
	}
	now := time.Now()
	for len(ts) < n {
		ts = append(ts, now)
	}
	f.seen[t] = ts
	return ts[:n:n]
}

func readLimited(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 0, 64<<10)
	for {
		if int64(len(buf)) > max {
			return nil, fmt.Errorf("%s: larger than %d bytes", p, max)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
	}
}

// Memory holds logs in memory; the simulated NOS appends to them.
type Memory struct {
	mu   sync.Mutex
	logs map[attester.LogType]*attester.Entries
}

var _ attester.Source = (*Memory)(nil)

// NewMemory returns an empty source.
func NewMemory() *Memory { return &Memory{logs: map[attester.LogType]*attester.Entries{}} }

// Set replaces the log of type t (a reboot).
func (m *Memory) Set(t attester.LogType, l *eventlog.Log, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *l
	c.Events = append([]eventlog.Event(nil), l.Events...)
	times := make([]time.Time, len(c.Events))
	for i := range times {
		times[i] = at
	}
	m.logs[t] = &attester.Entries{Log: &c, Times: times}
}

// Append adds an entry (a run-time measurement).
func (m *Memory) Append(t attester.LogType, e eventlog.Event, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ent := m.logs[t]
	if ent == nil {
		return
	}
	e.Seq = len(ent.Log.Events)
	ent.Log.Events = append(ent.Log.Events, e)
	ent.Times = append(ent.Times, at)
}

// Log returns a snapshot of the log of type t.
func (m *Memory) Log(_ context.Context, t attester.LogType) (*attester.Entries, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ent, ok := m.logs[t]
	if !ok {
		return nil, fmt.Errorf("no %s log on this device", t)
	}
	c := *ent.Log
	c.Events = ent.Log.Events[:len(ent.Log.Events):len(ent.Log.Events)]
	return &attester.Entries{Log: &c, Times: ent.Times[:len(ent.Times):len(ent.Times)]}, nil
}
