// Package yang holds the YANG modules RIV implements: the official IETF
// modules, unchanged with their notices (SOURCES.md gives their origin),
// and the project's own riv-* modules (riv-software-inventory), embedded
// so that the agent serves them with <get-schema> and validates its input
// against them without any file beside the binary.
package yang

import (
	"embed"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"
)

//go:embed *.yang
var files embed.FS

// Module is one embedded module file.
type Module struct {
	Name     string // e.g. "ietf-tpm-remote-attestation"
	Revision string // e.g. "2024-12-05"
	Text     string // the file, byte for byte
}

// modules reads the embedded files once: the agent looks modules up on
// every <get> (netconf-state lists the schemas it serves), and reading
// them copied the whole directory, about a megabyte, per lookup.
var modules = sync.OnceValue(func() []Module {
	ents, _ := fs.ReadDir(files, ".")
	var out []Module
	for _, e := range ents {
		base := strings.TrimSuffix(e.Name(), ".yang")
		name, rev, ok := strings.Cut(base, "@")
		if !ok {
			continue
		}
		b, err := files.ReadFile(e.Name())
		if err != nil {
			continue
		}
		out = append(out, Module{Name: name, Revision: rev, Text: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
})

// Modules returns every embedded module, sorted by name.
func Modules() []Module { return slices.Clone(modules()) }

// Find returns the module name at revision ("" for the only one there is).
func Find(name, revision string) (Module, bool) {
	for _, m := range modules() {
		if m.Name == name && (revision == "" || m.Revision == revision) {
			return m, true
		}
	}
	return Module{}, false
}

// FS is the embedded directory of module files (name@revision.yang).
func FS() fs.FS { return files }
