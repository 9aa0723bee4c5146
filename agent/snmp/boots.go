package snmp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxBoots is snmpEngineBoots' ceiling: it stays there once reached (RFC
// 3414 §2.2.2), and the engine's keys must then be changed.
const maxBoots = 2147483647

// nextBoots reads the engine boot count kept in path, increments it and
// saves it before the engine answers anything (RFC 3414 §2.2: it grows on
// every start, so that time-window checks stay fresh across restarts). A
// missing file starts at 1; a corrupt one is an error, not a reset.
func nextBoots(path string) (uint32, error) {
	var cur uint64
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("snmp: engine boots: %w", err)
	default:
		if cur, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err != nil || cur > maxBoots {
			return 0, fmt.Errorf("snmp: engine boots file %s does not hold a count 0..%d", path, maxBoots)
		}
	}
	next := min(cur+1, maxBoots)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".boots-*")
	if err != nil {
		return 0, fmt.Errorf("snmp: engine boots: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", next); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, fmt.Errorf("snmp: engine boots: %w", err)
	}
	return uint32(next), nil
}
