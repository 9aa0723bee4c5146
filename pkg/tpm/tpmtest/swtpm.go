// Package tpmtest starts real TPMs for tests: swtpm (libtpms) processes in
// temporary directories (pkg/tpm/swtpm runs them), stopped when the test
// ends.
package tpmtest

import (
	"path/filepath"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/tpm/swtpm"
)

// Swtpm is a running swtpm with a unix command socket and control socket.
type Swtpm struct {
	Dir      string
	Sock     string
	CtrlSock string
	p        *swtpm.Process
}

// Spec returns the pkg/tpm Open spec for this swtpm.
func (s *Swtpm) Spec() string { return "swtpm:" + s.Sock }

// StartSwtpm starts swtpm with a fresh state; it is stopped at cleanup.
// With banks given ("sha256", ...), swtpm_setup first allocates only those.
func StartSwtpm(t testing.TB, banks ...string) *Swtpm {
	t.Helper()
	dir := t.TempDir()
	if len(banks) > 0 {
		testref.NeedTool(t, "swtpm_setup")
		if err := swtpm.Setup(dir, banks); err != nil {
			t.Fatal(err)
		}
	}
	return startOn(t, dir)
}

// startOn starts swtpm on an existing state directory.
func startOn(t testing.TB, dir string) *Swtpm {
	t.Helper()
	testref.NeedTool(t, "swtpm")
	s := &Swtpm{Dir: dir, Sock: filepath.Join(dir, "tpm.sock"), CtrlSock: filepath.Join(dir, "ctrl.sock")}
	s.run(t)
	return s
}

func (s *Swtpm) run(t testing.TB) {
	t.Helper()
	p, err := swtpm.Run(s.Dir, s.Sock, s.CtrlSock, "")
	if err != nil {
		t.Fatal(err)
	}
	s.p = p
	t.Cleanup(p.Kill)
}

// Stop ends swtpm as a power-off does, after it has saved its state.
func (s *Swtpm) Stop() { s.p.Stop() }

// Restart starts swtpm again on its state directory (a power cycle: with
// startup-clear the TPM comes up after a TPM Reset).
func (s *Swtpm) Restart(t testing.TB) {
	t.Helper()
	s.run(t)
}

// Manufactured is an swtpm manufactured like a real TPM: EK certificates
// in NV, issued by a project-local swtpm-localca whose root is in CARoot.
type Manufactured struct {
	*Swtpm
	CARoot         string // PEM: the local CA root (the "TPM vendor" anchor)
	CAIntermediate string // PEM: the EK-issuing CA
}

// StartManufacturedSwtpm manufactures a TPM (EK and platform
// certificates, the CA in a temp dir, never /var/lib) and starts swtpm on
// it. banks default to sha256 and sha384.
func StartManufacturedSwtpm(t testing.TB, banks ...string) *Manufactured {
	t.Helper()
	testref.NeedTool(t, "swtpm_setup")
	testref.NeedTool(t, "swtpm_localca")
	dir := t.TempDir()
	st, err := swtpm.Manufacture(dir, banks)
	if err != nil {
		t.Fatal(err)
	}
	sw := startOn(t, filepath.Join(dir, "state"))
	return &Manufactured{Swtpm: sw, CARoot: st.CARoot, CAIntermediate: st.CAIntermediate}
}
