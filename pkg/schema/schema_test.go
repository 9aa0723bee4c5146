package schema_test

import (
	"testing"

	"github.com/openriv/riv/pkg/schema"
	"github.com/openriv/riv/yang"
)

// agentSet compiles the embedded modules as riv-agent implements them.
func agentSet(t testing.TB) *schema.Set {
	t.Helper()
	var srcs []schema.Source
	for _, m := range yang.Modules() {
		srcs = append(srcs, schema.Source{Name: m.Name, Text: m.Text})
	}
	s, err := schema.Compile(srcs, schema.Options{Implement: map[string][]string{
		"ietf-tpm-remote-attestation": {"bios", "ima", "netequip_boot"},
		"ietf-tcg-algs":               {"tpm20"},
		"ietf-keystore":               {"central-keystore-supported", "asymmetric-keys"},
		"ietf-crypto-types":           {},
		"ietf-netconf":                {},
		"ietf-netconf-with-defaults":  {},
		"ietf-netconf-monitoring":     {},
		"ietf-netconf-nmda":           {"with-defaults"},
		"ietf-yang-library":           {},
		"ietf-datastores":             {},
		"ietf-restconf-monitoring":    {},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCompile(t *testing.T) {
	s := agentSet(t)
	for _, n := range s.RPCs {
		t.Logf("rpc %s:%s", n.Module.Name, n.Name)
	}
	for _, n := range s.Top {
		t.Logf("top %s:%s", n.Module.Name, n.Name)
	}
}
