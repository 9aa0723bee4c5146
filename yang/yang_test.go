package yang_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/yang"
)

// TestOwnModulesLint: the project's own modules are embedded, are never
// named ietf-*, live in the project's namespace, and yanglint reads each
// without an error or a warning.
func TestOwnModulesLint(t *testing.T) {
	var own []yang.Module
	for _, m := range yang.Modules() {
		if strings.HasPrefix(m.Name, "riv-") {
			own = append(own, m)
		}
	}
	if len(own) == 0 {
		t.Fatal("no riv-* module embedded")
	}
	bin := testref.NeedTool(t, "yanglint")
	dir := testref.YangDir(t)
	for _, m := range own {
		t.Run(m.Name, func(t *testing.T) {
			if !strings.Contains(m.Text, `namespace "urn:openriv:params:xml:ns:yang:`+m.Name+`";`) || strings.Contains(m.Text, "module ietf-") {
				t.Errorf("%s is not in the project's namespace", m.Name)
			}
			out, err := exec.Command(bin, "-p", dir, filepath.Join(dir, m.Name+"@"+m.Revision+".yang")).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("yanglint %s: %v\n%s", m.Name, err, out)
			}
		})
	}
}
