// Package testref locates the repository's third-party test data
// (testdata/reference, listed with its provenance in testdata/SOURCES.md)
// and its official YANG modules (yang/) for tests. Both are part of the
// checkout, so a missing directory fails the test rather than skipping it.
// $RIV_REFERENCE points the tests at another copy of the data (a fuller
// reference set, say).
package testref

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	root string // the repository root, "" if not found
)

func findRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Root returns the repository root or fails t.
func Root(t testing.TB) string {
	t.Helper()
	once.Do(func() { root = findRoot() })
	if root == "" {
		t.Fatal("repository root (go.mod) not found above the working directory")
	}
	return root
}

// Dir returns the reference data directory or fails t.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("RIV_REFERENCE")
	if dir == "" {
		dir = filepath.Join(Root(t), "testdata", "reference")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("reference data not found at %q: %v", dir, err)
	}
	return dir
}

// YangDir returns the directory of the official YANG modules (yang/).
func YangDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(Root(t), "yang")
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
