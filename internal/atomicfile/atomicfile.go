// Package atomicfile replaces files so that a reader sees the old file or
// the new one, never half of one: the contract files (endpoints.json,
// collector.json, a ready file) are read by other processes while they
// are written.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to a temporary file beside path and renames it over
// path.
func Write(path string, b []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
