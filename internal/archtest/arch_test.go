// Package archtest enforces the import rules of DESIGN.md §2 with go list.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/openriv/riv/"

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		deps, err := exec.Command("go", "list", "-deps", p.ImportPath).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p.ImportPath, err)
		}
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, d := range strings.Fields(string(deps)) {
			if !strings.HasPrefix(d, mod) {
				continue
			}
			dr := strings.TrimPrefix(d, mod)
			under := func(s, top string) bool { return s == top || strings.HasPrefix(s, top+"/") }
			switch {
			case under(rel, "pkg") && (under(dr, "agent") || under(dr, "collector") || under(dr, "testbed")):
				t.Errorf("%s imports %s: pkg/* must not import agent, collector or testbed", rel, dr)
			case under(rel, "collector") && under(dr, "pkg/tpm"):
				t.Errorf("%s imports %s: the collector has no TPM", rel, dr)
			case under(rel, "agent") && under(dr, "collector"), under(rel, "collector") && under(dr, "agent"):
				t.Errorf("%s imports %s: agent and collector must not import each other", rel, dr)
			}
		}
		// Pure parsers do no I/O.
		if rel == "pkg/quote" || rel == "pkg/eventlog" || rel == "pkg/pcr" || rel == "pkg/alg" {
			for _, d := range strings.Fields(string(deps)) {
				if d == "os/exec" || d == "net/http" {
					t.Errorf("%s depends on %s: pure parsers do no I/O", rel, d)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("go list found %d packages", n)
	}
}
