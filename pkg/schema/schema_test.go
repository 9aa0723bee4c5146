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

// TestWhenContextOfUsesAndAugment: a when on a uses or augment is
// evaluated with the parent of the nodes it adds as context node (RFC
// 7950 §7.21.5), a when on a node itself with that node. yanglint -t
// nc-rpc gives the same verdicts on these inputs.
func TestWhenContextOfUsesAndAugment(t *testing.T) {
	const mod = `module t {
  yang-version 1.1; namespace "urn:t"; prefix t;
  grouping g { leaf b { type string; } }
  rpc r {
    input {
      leaf a { type string; }
      uses g { when "a = 'yes'"; }
      leaf c { type string; when "../a = 'yes'"; }
    }
  }
  augment "/t:r/t:input" { when "a = 'yes'"; leaf d { type string; } }
}`
	s, err := schema.Compile([]schema.Source{{Name: "t", Text: mod}}, schema.Options{Implement: map[string][]string{"t": {}}})
	if err != nil {
		t.Fatal(err)
	}
	rpc := s.FindRPC("urn:t", "r")
	for _, c := range []struct {
		in   string
		want string // error-tag, "" for accepted
	}{
		{`<a>yes</a><b>x</b>`, ""},
		{`<a>no</a><b>x</b>`, "unknown-element"},
		{`<a>yes</a><c>x</c>`, ""},
		{`<a>no</a><c>x</c>`, "unknown-element"},
		{`<a>yes</a><d>x</d>`, ""},
		{`<a>no</a><d>x</d>`, "unknown-element"},
	} {
		x, err := schema.ParseXML([]byte(`<r xmlns="urn:t">`+c.in+`</r>`), schema.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, verr := s.Input(rpc, x, nil)
		got := ""
		if verr != nil {
			got = verr.Tag
		}
		if got != c.want {
			t.Errorf("%s: %q (%v), want %q", c.in, got, verr, c.want)
		}
	}
}
