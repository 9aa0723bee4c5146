// Package tpmtest starts real TPMs for tests: swtpm (libtpms) processes in
// temporary directories.
package tpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	dir := t.TempDir()
	if len(banks) > 0 {
		setup := testref.NeedTool(t, "swtpm_setup")
		out, err := exec.Command(setup, "--tpm2", "--tpmstate", dir, "--pcr-banks", strings.Join(banks, ","), "--overwrite").CombinedOutput()
		if err != nil {
			t.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	return startOn(t, dir)
}

// startOn starts swtpm on an existing state directory.
func startOn(t testing.TB, dir string) *Swtpm {
	t.Helper()
	bin := testref.NeedTool(t, "swtpm")
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
	// The socket file exists from bind(), before listen(): wait until a
	// connection is accepted (swtpm takes the probe's close in stride).
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("unix", s.Sock); err == nil {
			c.Close()
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(fmt.Errorf("swtpm socket %s did not appear", s.Sock))
	return nil
}

// Stop ends swtpm as a power-off does, after it has saved its state.
func (s *Swtpm) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// Restart starts swtpm again on its state directory (a power cycle: with
// startup-clear the TPM comes up after a TPM Reset).
func (s *Swtpm) Restart(t testing.TB) {
	t.Helper()
	n := startOn(t, s.Dir)
	s.cmd = n.cmd
}

// Manufactured is an swtpm manufactured like a real TPM: EK certificates
// in NV, issued by a project-local swtpm-localca whose root is in CARoot.
type Manufactured struct {
	*Swtpm
	CARoot         string // PEM: the local CA root (the "TPM vendor" anchor)
	CAIntermediate string // PEM: the EK-issuing CA
}

// StartManufacturedSwtpm runs swtpm_setup with EK and platform
// certificates (keeping the CA in a temp dir, never /var/lib), then starts
// swtpm on that state.
func StartManufacturedSwtpm(t testing.TB, banks ...string) *Manufactured {
	t.Helper()
	setup := testref.NeedTool(t, "swtpm_setup")
	testref.NeedTool(t, "swtpm_localca")
	dir := t.TempDir()
	state, ca := filepath.Join(dir, "state"), filepath.Join(dir, "ca")
	for _, d := range []string{state, ca} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if len(banks) == 0 {
		banks = []string{"sha256", "sha384"}
	}
	files := map[string]string{
		"localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca),
		"localca.options": "--platform-manufacturer RIV\n--platform-version 1.0\n--platform-model rtr-1000\n",
		"setup.conf":      fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %[1]s/localca.conf\ncreate_certs_tool_options = %[1]s/localca.options\nactive_pcr_banks = %[2]s\n", dir, strings.Join(banks, ",")),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(setup, "--tpm2", "--config", filepath.Join(dir, "setup.conf"), "--tpmstate", state,
		"--create-ek-cert", "--create-platform-cert", "--overwrite").CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	sw := startOn(t, state)
	return &Manufactured{Swtpm: sw, CARoot: filepath.Join(ca, "swtpm-localca-rootca-cert.pem"), CAIntermediate: filepath.Join(ca, "issuercert.pem")}
}
