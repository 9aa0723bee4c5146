package cli

import "golang.org/x/sys/unix"

// isTerminal asks the tty driver: a character device such as /dev/null
// is not a terminal, so a mode check would not do.
func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}
