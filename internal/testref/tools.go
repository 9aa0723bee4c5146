package testref

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of an external program a test needs. Without
// it the test skips with the reason — except under CI (CI=true), where
// `make test` has installed every tool first, so a missing one fails.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (make setup installs it): %v", name, err)
		}
		t.Skipf("%s not installed; run make setup", name)
	}
	return p
}
