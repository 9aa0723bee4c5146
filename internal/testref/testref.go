// Package testref locates the shared reference data (../shared/reference
// beside the repository, or $RIV_REFERENCE) for tests. A missing directory
// fails the test: CI always has it, and a silent skip would hide that the
// parsers were never run on real data.
package testref

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
)

func find() string {
	if d := os.Getenv("RIV_REFERENCE"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "reference")
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Dir returns the reference directory or fails t.
func Dir(t testing.TB) string {
	t.Helper()
	once.Do(func() { dir = find() })
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("reference data not found at %q (set RIV_REFERENCE): %v", dir, err)
	}
	return dir
}

// Path joins elem under the reference directory.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Dir(t)}, elem...)...)
}

// Read returns the bytes of a reference file or fails t.
func Read(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
