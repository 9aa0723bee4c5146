// Package lockdir gives one process a directory: an exclusive flock on
// DIR/.lock, with the holder's pid written in it. A second riv-agent dev
// or riv-router on the same directory would overwrite the running one's
// keys and endpoints; the kernel's lock goes with the process however it
// ends, so a crashed holder never leaves the directory locked.
package lockdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/openriv/riv/internal/cli"
)

// Name is the lock file in the directory.
const Name = ".lock"

// Lock takes dir for this process until unlock (or exit). holder names
// the kind of program for the error a second one gets ("riv-agent dev").
func Lock(dir, holder string) (unlock func(), err error) {
	path := filepath.Join(dir, Name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, cli.Usage("lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, cli.Usage("%s is in use by another %s (pid %s)", dir, holder, strings.TrimSpace(string(pid)))
		}
		return nil, cli.Usage("lock %s: %v", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}
