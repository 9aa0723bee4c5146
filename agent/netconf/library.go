package netconf

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/openriv/riv/yang"
)

type module struct {
	name, revision, ns string
	features           []string
	implemented        bool
}

// modules is the YANG library of the agent (RFC 8525).
var modules = []module{
	{"ietf-tpm-remote-attestation", "2024-12-05", NSTPM, []string{"bios", "ima", "netequip_boot"}, true},
	{"ietf-tcg-algs", "2024-12-05", NSTAA, []string{"tpm20"}, true},
	{"ietf-keystore", "2024-10-10", NSKeystore, []string{"central-keystore-supported", "asymmetric-keys"}, true},
	{"ietf-crypto-types", "2024-10-10", NSCT, []string{"hidden-private-keys"}, true},
	{"ietf-netconf-monitoring", "2010-10-04", NSMonitoring, nil, true},
	{"ietf-netconf-nmda", "2019-01-07", NSNMDA, nil, true},
	{"ietf-yang-library", "2019-01-04", NSYangLib, nil, true},
	{"ietf-datastores", "2018-02-14", NSDatastores, nil, true},
	{"ietf-netconf-acm", "2018-02-14", "urn:ietf:params:xml:ns:yang:ietf-netconf-acm", nil, false},
	{"ietf-yang-types", "2013-07-15", "urn:ietf:params:xml:ns:yang:ietf-yang-types", nil, false},
	{"ietf-inet-types", "2013-07-15", "urn:ietf:params:xml:ns:yang:ietf-inet-types", nil, false},
	{"ietf-hardware", "2018-03-13", "urn:ietf:params:xml:ns:yang:ietf-hardware", nil, false},
	{"iana-hardware", "2018-03-13", "urn:ietf:params:xml:ns:yang:iana-hardware", nil, false},
	{"ietf-truststore", "2024-10-10", "urn:ietf:params:xml:ns:yang:ietf-truststore", nil, false},
}

// libraryModules is the module table with the attestation module's
// features set to the logs the device keeps (RFC 9684: one feature per
// log type).
func (s *Server) libraryModules() []module {
	out := append([]module(nil), modules...)
	for i := range out {
		if out[i].name == "ietf-tpm-remote-attestation" {
			out[i].features = nil
			for _, t := range s.cfg.Attester.Config().LogTypes {
				out[i].features = append(out[i].features, string(t))
			}
		}
	}
	return out
}

// contentID identifies this library's content (it changes when modules do).
func (s *Server) contentID() string {
	var b strings.Builder
	for _, m := range s.libraryModules() {
		b.WriteString(m.name + "@" + m.revision + ";" + strings.Join(m.features, ",") + ";")
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:8])
}

func (s *Server) yangLibrary() *Node {
	set := El("module-set", Leaf("name", "riv"))
	mods := s.libraryModules()
	for _, m := range mods {
		if m.implemented {
			e := El("module", Leaf("name", m.name), Leaf("revision", m.revision), Leaf("namespace", m.ns))
			for _, f := range m.features {
				e.Add(Leaf("feature", f))
			}
			set.Add(e)
		}
	}
	for _, m := range mods {
		if !m.implemented {
			set.Add(El("import-only-module", Leaf("name", m.name), Leaf("revision", m.revision), Leaf("namespace", m.ns)))
		}
	}
	ds := func(name string) *Node {
		n := El("datastore", Leaf("name", "ds:"+name), Leaf("schema", "riv"))
		n.Children[0].Attrs = append(n.Children[0].Attrs, xmlns("ds", NSDatastores))
		return n
	}
	return El("yang-library", set, El("schema", Leaf("name", "riv"), Leaf("module-set", "riv")),
		ds("running"), ds("operational"), Leaf("content-id", s.contentID())).InNS(NSYangLib)
}

// libraryModule returns the text of a module the library lists, at
// revision (any when empty), from the modules embedded in the binary.
func libraryModule(name, revision string) (yang.Module, bool) {
	for _, m := range modules {
		if m.name == name && (revision == "" || revision == m.revision) {
			return yang.Find(m.name, m.revision)
		}
	}
	return yang.Module{}, false
}

// monitoring lists the schemas <get-schema> serves (RFC 6022).
func (s *Server) monitoring() *Node {
	schemas := El("schemas")
	for _, m := range modules {
		if _, ok := libraryModule(m.name, m.revision); !ok {
			continue
		}
		schemas.Add(El("schema", Leaf("identifier", m.name), Leaf("version", m.revision), Leaf("format", "yang"),
			Leaf("namespace", m.ns), Leaf("location", "NETCONF")))
	}
	return El("netconf-state", schemas).InNS(NSMonitoring)
}
