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
	"sync"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/eventlog"
)

// Default kernel paths.
const (
	KernelBIOS = "/sys/kernel/security/tpm0/binary_bios_measurements"
	KernelIMA  = "/sys/kernel/security/ima/binary_runtime_measurements"
)

// Files reads logs from files each time they are asked for (the kernel
// appends to the IMA log as it measures).
type Files struct {
	Paths map[attester.LogType]string
	// MaxSize bounds a log file read (default 256 MiB).
	MaxSize int64
}

var _ attester.Source = (*Files)(nil)

// Log parses the current content of the log file of type t.
func (f *Files) Log(_ context.Context, t attester.LogType) (*attester.Entries, error) {
	p, ok := f.Paths[t]
	if !ok {
		return nil, fmt.Errorf("no %s log configured", t)
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
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
	format := eventlog.FormatTCG
	if t != attester.LogBIOS {
		format = eventlog.FormatIMA
	}
	l, err := eventlog.Parse(raw, format)
	if err != nil {
		return nil, err
	}
	times := make([]time.Time, len(l.Events))
	for i := range times {
		times[i] = st.ModTime()
	}
	return &attester.Entries{Log: l, Times: times}, nil
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
