package logsrc

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

func entry(t *testing.T, name string) eventlog.Event {
	h := sha256.Sum256([]byte(name))
	return eventlog.IMAEntryFor(10, alg.SHA256, h[:], name, nil, []alg.ID{alg.SHA1, alg.SHA256})
}

func appendIMA(t *testing.T, path string, bank alg.ID, evs ...eventlog.Event) {
	t.Helper()
	raw, err := eventlog.WriteIMA(evs, bank)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(raw); err != nil {
		t.Fatal(err)
	}
}

// TestFilesIMA reads an IMA log as the kernel writes it: growing while the
// agent runs, with a per-bank file beside it.
func TestFilesIMA(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "binary_runtime_measurements")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src := &Files{Paths: map[attester.LogType]string{attester.LogIMA: p}}
	ctx := context.Background()
	got, err := src.Log(ctx, attester.LogIMA)
	if err != nil || len(got.Log.Events) != 0 {
		t.Fatalf("empty log: %v, %v", got, err)
	}
	a, b := entry(t, "/usr/bin/a"), entry(t, "/usr/bin/b")
	appendIMA(t, p, alg.SHA1, a)
	appendIMA(t, p+"_sha256", alg.SHA256, a)
	first, err := src.Log(ctx, attester.LogIMA)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Log.Events) != 1 || first.Log.Events[0].Digest(alg.SHA256) == nil || first.Log.Events[0].Digest(alg.SHA1) == nil {
		t.Fatalf("first read: %+v", first.Log.Events)
	}
	// The kernel appends to both files; a read between the two appends
	// serves what both have.
	appendIMA(t, p, alg.SHA1, b)
	mid, err := src.Log(ctx, attester.LogIMA)
	if err != nil || len(mid.Log.Events) != 1 {
		t.Fatalf("read between appends: %d entries, %v", len(mid.Log.Events), err)
	}
	appendIMA(t, p+"_sha256", alg.SHA256, b)
	second, err := src.Log(ctx, attester.LogIMA)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Log.Events) != 2 || second.Log.Events[1].IMA.FileName != "/usr/bin/b" {
		t.Fatalf("second read: %+v", second.Log.Events)
	}
	if !second.Times[0].Equal(first.Times[0]) {
		t.Error("an entry's time changed between reads")
	}
	// A per-bank file that disagrees is an error, never a merge.
	os.WriteFile(p+"_sha256", nil, 0o644)
	appendIMA(t, p+"_sha256", alg.SHA256, b, a)
	if _, err := src.Log(ctx, attester.LogIMA); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("mismatched bank file: %v", err)
	}
	// Garbage is an error naming the file.
	os.WriteFile(p, []byte("not a log at all, not at all"), 0o644)
	if _, err := src.Log(ctx, attester.LogIMA); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := src.Log(ctx, attester.LogBIOS); err == nil {
		t.Error("an unconfigured log was served")
	}
}
