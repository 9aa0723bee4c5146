package restconf

import (
	"strings"
	"sync"
	"testing"

	"github.com/openriv/riv/pkg/schema"
	"github.com/openriv/riv/yang"
)

var fuzzSet = sync.OnceValues(func() (*schema.Set, error) {
	var srcs []schema.Source
	for _, m := range yang.Modules() {
		srcs = append(srcs, schema.Source{Name: m.Name, Text: m.Text})
	}
	return schema.Compile(srcs, schema.Options{Implement: map[string][]string{
		"ietf-tpm-remote-attestation": {"bios", "ima", "netequip_boot"}, "ietf-tcg-algs": {"tpm20"},
		"ietf-keystore": {"central-keystore-supported", "asymmetric-keys"}, "ietf-crypto-types": {"hidden-private-keys"},
		"ietf-yang-library": {}, "ietf-datastores": {}, "ietf-restconf-monitoring": {}, "riv-software-inventory": {}}})
})

// FuzzParsePath: the parts of a data URI a client controls — the path and
// the fields expression — resolve against the schema or give an error,
// never a panic, and a path that resolves makes a well-formed filter.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"", "ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=tpm0",
		"ietf-keystore:keystore/asymmetric-keys/asymmetric-key=a%2Fb", "ietf-yang-library:yang-library/module-set=riv/module=x",
		"a:b", "ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=%zz", strings.Repeat("x/", 40),
		"riv-software-inventory:software-inventory/component=3c1f4a52-7d0e-5b9a-8c41-0d2e6f7a8b01/rim",
		"riv-software-inventory:software-inventory/component=a%3Cb%26/rim=00/content"} {
		f.Add(s, "tpms/tpm(name;status)")
	}
	set, err := fuzzSet()
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{schema: set}
	f.Fuzz(func(t *testing.T, p, fields string) {
		steps, err := s.resolve(p)
		if err != nil {
			return
		}
		var target *schema.Node
		if len(steps) > 0 {
			target = steps[len(steps)-1].sn
		}
		parseFields(fields, set, target)
		// The path becomes a well-formed subtree filter, whatever its keys.
		if f := pathFilter(steps); f != "" {
			if _, err := schema.ParseXML([]byte("<filter>"+f+"</filter>"), schema.Limits{}); err != nil {
				t.Fatalf("path %q became the malformed filter %q: %v", p, f, err)
			}
		}
	})
}

// FuzzXMLInput: an RPC's XML input becomes a well-formed operation
// element or an error.
func FuzzXMLInput(f *testing.F) {
	f.Add([]byte(`<input xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation" xmlns:tpm="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>tpm:ima</log-type></input>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><input>&a;</input>`))
	set, err := fuzzSet()
	if err != nil {
		f.Fatal(err)
	}
	rpc := set.FindRPC("urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation", "log-retrieval")
	f.Fuzz(func(t *testing.T, body []byte) {
		op, err := xmlInput(rpc, body)
		if err != nil {
			return
		}
		if _, err := schema.ParseXML([]byte(op), schema.Limits{}); err != nil {
			t.Fatalf("accepted input %q became malformed XML %q: %v", body, op, err)
		}
	})
}
