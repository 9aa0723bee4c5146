package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/internal/lockdir"
	"github.com/openriv/riv/pkg/tpm"
)

// runMeasure is `riv-router measure --dir DIR [--as NAME] FILE`.
func runMeasure(env *cli.Env, args []string) error {
	fs := env.Flags()
	dir := fs.String("dir", "", "the router's directory")
	as := fs.String("as", "", "the path IMA records (default: FILE's absolute path)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return cli.Usage("measure: want --dir DIR and one FILE")
	}
	content, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return cli.Usage("measure: %v", err)
	}
	name := *as
	if name == "" {
		if name, err = filepath.Abs(fs.Arg(0)); err != nil {
			return cli.Usage("measure: %v", err)
		}
	}
	st, err := readState(*dir)
	if err != nil {
		return cli.Usage("measure: %v (is %s a riv-router directory?)", err, *dir)
	}
	if _, err := runningPID(*dir); err != nil {
		return err
	}
	unlock, err := lockOps(*dir)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Not shared: the agent holds the TPM only for each of its commands,
	// so this waits at most for one of them.
	tp, err := tpm.Open(ctx, st.TPM)
	if err != nil {
		return cli.Unreachable("measure: TPM %s: %v", st.TPM, err)
	}
	defer tp.Close()
	if err := measure(ctx, tp, st, name, content); err != nil {
		return cli.Failed("measure: %v", err)
	}
	fmt.Fprintf(env.Stdout, "measured %s into PCR 10\n", name)
	return nil
}

// runReboot is `riv-router reboot --dir DIR`: it asks the running
// riv-router (SIGUSR1) and waits until the router has booted again.
func runReboot(env *cli.Env, args []string) error {
	fs := env.Flags()
	dir := fs.String("dir", "", "the router's directory")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the router to come back")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return cli.Usage("reboot: want --dir DIR")
	}
	st, err := readState(*dir)
	if err != nil {
		return cli.Usage("reboot: %v (is %s a riv-router directory?)", err, *dir)
	}
	pid, err := runningPID(*dir)
	if err != nil {
		return err
	}
	unlock, err := lockOps(*dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return cli.Unreachable("reboot: signal riv-router (pid %d): %v", pid, err)
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		now, err := readState(*dir)
		if err != nil || now.Boots == st.Boots {
			continue
		}
		if now.RebootError != "" {
			return cli.Failed("reboot: %s", now.RebootError)
		}
		fmt.Fprintf(env.Stdout, "rebooted %s (boot %d)\n", now.Serial, now.Boots+1)
		return nil
	}
	return cli.Unreachable("reboot: the router did not come back within %v", *timeout)
}

// runningPID returns the pid of the riv-router holding dir, or an
// unreachable error when none does.
func runningPID(dir string) (int, error) {
	path := filepath.Join(dir, lockdir.Name)
	f, err := os.Open(path)
	if err != nil {
		return 0, cli.Unreachable("no router runs in %s: %v", dir, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, cli.Unreachable("no router runs in %s (start it with riv-router --dir %s)", dir, dir)
	} else if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, cli.Unreachable("%s: %v", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, cli.Unreachable("%s: %v", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, cli.Unreachable("%s: no pid in it", path)
	}
	return pid, nil
}

// lockOps serializes measure and reboot on one router (DIR/.ops).
func lockOps(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".ops"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, cli.Usage("%v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, cli.Usage("lock %s: %v", f.Name(), err)
	}
	return func() { f.Close() }, nil
}
