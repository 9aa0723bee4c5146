// Package archtest enforces the import rules of DESIGN.md §2: what each
// floor of the repository may link. It runs `go list` over the module
// once, so it checks what the binaries really carry (test-only imports are
// not linked into anything and are not checked).
package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/openriv/riv/"

// deps maps each package of the module to the module packages it links,
// and std to the standard-library packages.
func deps(t *testing.T) (map[string][]string, map[string][]string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	m, std := map[string][]string{}, map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module) {
				m[pkg] = append(m[pkg], strings.TrimPrefix(d, module))
			} else {
				std[pkg] = append(std[pkg], d)
			}
		}
		if _, ok := m[pkg]; !ok {
			m[pkg] = nil
		}
	}
	return m, std
}

func under(pkg, floor string) bool { return pkg == floor || strings.HasPrefix(pkg, floor+"/") }

func TestImportRules(t *testing.T) {
	all, std := deps(t)
	if len(all) < 20 {
		t.Fatalf("go list found %d packages: the module was not listed", len(all))
	}
	rules := []struct {
		name   string
		from   func(string) bool
		banned func(string) bool
	}{
		{"pkg never imports agent, collector or testbed", func(p string) bool { return under(p, "pkg") },
			func(d string) bool { return under(d, "agent") || under(d, "collector") || under(d, "testbed") }},
		{"the collector has no TPM", func(p string) bool { return under(p, "collector") },
			func(d string) bool { return under(d, "pkg/tpm") }},
		{"the agent never imports the collector", func(p string) bool { return under(p, "agent") },
			func(d string) bool { return under(d, "collector") }},
		{"the collector never imports the agent", func(p string) bool { return under(p, "collector") },
			func(d string) bool { return under(d, "agent") }},
		{"nothing outside the testbed imports it", func(p string) bool { return !under(p, "testbed") },
			func(d string) bool { return under(d, "testbed") }},
		{"the evidence types know no transport", func(p string) bool { return under(p, "collector/evidence") },
			func(d string) bool { return under(d, "collector/client") || under(d, "collector/verifier") }},
		{"the transport clients know no appraisal", func(p string) bool { return under(p, "collector/client") },
			func(d string) bool { return under(d, "collector/verifier") }},
		{"the attester never calls its servers", func(p string) bool { return under(p, "agent/attester") },
			func(d string) bool {
				return under(d, "agent/netconf") || under(d, "agent/restconf") || under(d, "agent/snmp")
			}},
		{"the production agent links no simulator but through dev", func(p string) bool {
			return under(p, "agent") && !under(p, "agent/sim") && p != "agent/cmd/riv-agent"
		}, func(d string) bool { return under(d, "agent/sim") }},
	}
	for _, r := range rules {
		for p, ds := range all {
			if !r.from(p) {
				continue
			}
			for _, d := range ds {
				if r.banned(d) {
					t.Errorf("%s: %s imports %s", r.name, p, d)
				}
			}
		}
	}
	// The issue's own wording: the production binary carries no testbed.
	for _, d := range all["agent/cmd/riv-agent"] {
		if under(d, "testbed") {
			t.Errorf("riv-agent links %s", d)
		}
	}
	if _, ok := all["agent/cmd/riv-agent"]; !ok {
		t.Error("agent/cmd/riv-agent not listed")
	}
	// Pure parsers do no I/O.
	for _, p := range []string{"pkg/quote", "pkg/eventlog", "pkg/pcr", "pkg/alg"} {
		for _, d := range std[p] {
			if d == "os/exec" || d == "net/http" {
				t.Errorf("%s depends on %s: pure parsers do no I/O", p, d)
			}
		}
	}
}
