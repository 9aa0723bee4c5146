package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFleetOnce is `make demo DEMO_ARGS=--once`: three riv-agent
// processes, one appraisal round, every verdict as expected.
func TestFleetOnce(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "riv-agent")
	if out, err := exec.Command("go", "build", "-o", agent, "github.com/openriv/riv/agent/cmd/riv-agent").CombinedOutput(); err != nil {
		t.Fatalf("build riv-agent: %v\n%s", err, out)
	}
	start := time.Now()
	if err := runFleet(agent, true, time.Second); err != nil {
		t.Fatalf("runFleet(once) = %v", err)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("demo round took %v, want under 60 s", d)
	}
}
