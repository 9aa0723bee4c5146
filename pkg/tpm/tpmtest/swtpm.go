// Package tpmtest starts real TPMs for tests: swtpm (libtpms) processes in
// temporary directories.
package tpmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
)

// Swtpm is a running swtpm with a unix command socket and control socket.
type Swtpm struct {
	Dir      string
	Sock     string
	CtrlSock string
	cmd      *exec.Cmd
}

// Spec returns the pkg/tpm Open spec for this swtpm.
func (s *Swtpm) Spec() string { return "swtpm:" + s.Sock }

// StartSwtpm starts swtpm with a fresh state; it is stopped at cleanup.
// With banks given ("sha256", ...), swtpm_setup first allocates only those.
func StartSwtpm(t testing.TB, banks ...string) *Swtpm {
	t.Helper()
	bin := testref.NeedTool(t, "swtpm")
	dir := t.TempDir()
	if len(banks) > 0 {
		setup := testref.NeedTool(t, "swtpm_setup")
		out, err := exec.Command(setup, "--tpm2", "--tpmstate", dir, "--pcr-banks", strings.Join(banks, ","), "--overwrite").CombinedOutput()
		if err != nil {
			t.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	s := &Swtpm{Dir: dir, Sock: filepath.Join(dir, "tpm.sock"), CtrlSock: filepath.Join(dir, "ctrl.sock")}
	s.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+s.Sock,
		"--ctrl", "type=unixio,path="+s.CtrlSock,
		"--flags", "not-need-init,startup-clear")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(s.Sock); err == nil {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(fmt.Errorf("swtpm socket %s did not appear", s.Sock))
	return nil
}
