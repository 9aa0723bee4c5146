package main

import (
	"os/exec"

	"github.com/openriv/riv/internal/testref"
	"path/filepath"
	"testing"
	"time"
)

// TestFleetOnce is `make demo DEMO_ARGS=--once`: five riv-router
// processes (each its swtpm, one per line card too, and riv-agent serve),
// one appraisal round, every verdict as expected, and the rebooting
// router re-attested after a reboot.
func TestFleetOnce(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"agent/cmd/riv-agent", "testbed/cmd/riv-router", "collector/cmd/riv-collector"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(b)), "github.com/openriv/riv/"+b).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	start := time.Now()
	if err := runFleet(filepath.Join(bin, "riv-router"), filepath.Join(bin, "riv-agent"), filepath.Join(bin, "riv-collector"), testref.Dir(t), true, time.Second); err != nil {
		t.Fatalf("runFleet(once) = %v", err)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("demo round took %v, want under 60 s", d)
	}
}
