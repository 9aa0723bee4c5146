// Package swtpm runs swtpm (libtpms), a real TPM 2.0 implementation, for
// the testbed's routers and the tests: it manufactures one — an EK with
// its certificate from a project-local swtpm-localca, as a TPM vendor does
// — or sets one up with chosen PCR banks, starts it on unix sockets as a
// child process, and resets it for a reboot through its control channel.
package swtpm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is what a unix socket address holds (sun_path, with its
// terminating NUL).
const maxSocketPath = 107

// State is a manufactured TPM's directory.
type State struct {
	Dir string
	// CARoot and CAIntermediate are the TPM vendor's certificates that
	// issued the EK certificate (for provisioning's --tpm-ca).
	CARoot, CAIntermediate string
}

// Manufacture creates a TPM in dir (its state in dir/state, the vendor
// CA in dir/ca) with the PCR banks given, an EK certificate in NV and the
// NV locked, as a TPM leaves its factory. A dir that holds a TPM already
// is left as it is: the same TPM, the same identity.
func Manufacture(dir string, banks []string) (*State, error) {
	st := &State{Dir: dir, CARoot: filepath.Join(dir, "ca", "swtpm-localca-rootca-cert.pem"), CAIntermediate: filepath.Join(dir, "ca", "issuercert.pem")}
	if _, err := os.Stat(filepath.Join(dir, "state", "tpm2-00.permall")); err == nil {
		return st, nil
	}
	setup, err := exec.LookPath("swtpm_setup")
	if err != nil {
		return nil, fmt.Errorf("swtpm_setup not installed (make setup installs swtpm-tools): %w", err)
	}
	if _, err := exec.LookPath("swtpm_localca"); err != nil {
		return nil, fmt.Errorf("swtpm_localca not installed (make setup installs swtpm-tools): %w", err)
	}
	state, ca := filepath.Join(dir, "state"), filepath.Join(dir, "ca")
	for _, d := range []string{state, ca} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if len(banks) == 0 {
		banks = []string{"sha256", "sha384"}
	}
	// Project-local configuration: the defaults write into
	// /var/lib/swtpm-localca, shared by every swtpm on the machine.
	files := map[string]string{
		"localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca),
		"localca.options": "--platform-manufacturer RIV\n--platform-version 1.0\n--platform-model rtr-1000\n",
		"setup.conf": fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %[1]s/localca.conf\ncreate_certs_tool_options = %[1]s/localca.options\nactive_pcr_banks = %[2]s\n",
			dir, strings.Join(banks, ",")),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			return nil, err
		}
	}
	out, err := exec.Command(setup, "--tpm2", "--config", filepath.Join(dir, "setup.conf"), "--tpmstate", state,
		"--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--overwrite").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("swtpm_setup: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return st, nil
}

// Setup allocates the PCR banks of a fresh TPM in stateDir (swtpm_setup
// --pcr-banks), without certificates.
func Setup(stateDir string, banks []string) error {
	setup, err := exec.LookPath("swtpm_setup")
	if err != nil {
		return fmt.Errorf("swtpm_setup not installed (make setup installs swtpm-tools): %w", err)
	}
	out, err := exec.Command(setup, "--tpm2", "--tpmstate", stateDir, "--pcr-banks", strings.Join(banks, ","), "--overwrite").CombinedOutput()
	if err != nil {
		return fmt.Errorf("swtpm_setup: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Process is a running swtpm.
type Process struct {
	Sock, CtrlSock string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// Spec is the TPM's pkg/tpm spec.
func (p *Process) Spec() string { return "swtpm:" + p.Sock }

// Start runs swtpm on st's state with its command and control sockets at
// sock and ctrl. The process is this one's child and gets SIGTERM when
// this one dies.
func Start(st *State, sock, ctrl string) (*Process, error) {
	return Run(filepath.Join(st.Dir, "state"), sock, ctrl, filepath.Join(st.Dir, "swtpm.log"))
}

// Run runs swtpm on the state in stateDir (a fresh one when it is empty)
// with its command and control sockets at sock and ctrl, logging to
// logFile ("": to this process's stderr).
func Run(stateDir, sock, ctrl, logFile string) (*Process, error) {
	for _, s := range []string{sock, ctrl} {
		if len(s) > maxSocketPath {
			return nil, fmt.Errorf("socket path %s is %d bytes, longer than a unix socket takes (%d): use a shorter directory", s, len(s), maxSocketPath)
		}
		os.Remove(s)
	}
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("swtpm not installed (make setup installs it): %w", err)
	}
	p := &Process{Sock: sock, CtrlSock: ctrl, exited: make(chan struct{})}
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + stateDir,
		"--server", "type=unixio,path=" + sock, "--ctrl", "type=unixio,path=" + ctrl, "--flags", "not-need-init,startup-clear"}
	if logFile != "" {
		args = append(args, "--log", "file="+logFile)
	}
	p.cmd = exec.Command(bin, args...)
	if logFile == "" {
		p.cmd.Stderr = os.Stderr
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	// The socket exists from bind(), before listen(): wait until a
	// connection is accepted.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("swtpm on %s exited at start", stateDir)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
	return nil, errors.New("swtpm did not open its socket within 10 s")
}

// Kill ends swtpm at once (a power loss).
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// Stop ends swtpm as a power-off does, after it has saved its state.
func (p *Process) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// Reset is a platform reset (the reboot of the router): swtpm_ioctl -i
// re-initializes the TPM, whose PCRs return to their reset values; the
// next TPM2_Startup(CLEAR) increments resetCount. Persistent keys and NV
// stay: the same TPM, the same identity.
func Reset(ctrl string) error {
	bin, err := exec.LookPath("swtpm_ioctl")
	if err != nil {
		return fmt.Errorf("swtpm_ioctl not installed (make setup installs swtpm-tools): %w", err)
	}
	if out, err := exec.Command(bin, "--unix", ctrl, "-i").CombinedOutput(); err != nil {
		return fmt.Errorf("swtpm_ioctl -i: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
