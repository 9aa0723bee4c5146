package netconf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/schema"
	"github.com/openriv/riv/yang"
)

// implemented are the modules the agent implements and the features it
// supports of each; the attestation module's features are the log types
// the device keeps (RFC 9684 §3.1.1.1). The project's
// riv-software-inventory is implemented by an agent that serves an
// inventory.
func implemented(logs []attester.LogType, restconf, inventory, mtpm bool) map[string][]string {
	var feats []string
	for _, t := range logs {
		feats = append(feats, string(t))
	}
	if mtpm {
		// Several TPMs: compute-nodes, compute-node per TPM, and
		// certificate-name in a challenge (RFC 9684 feature mtpm).
		feats = append(feats, "mtpm")
	}
	m := map[string][]string{
		"ietf-tpm-remote-attestation": feats,
		"ietf-tcg-algs":               {"tpm20"},
		"ietf-keystore":               {"central-keystore-supported", "asymmetric-keys"},
		"ietf-crypto-types":           {"hidden-private-keys"},
		"ietf-netconf":                {},
		"ietf-netconf-with-defaults":  {},
		"ietf-netconf-monitoring":     {},
		"ietf-netconf-nmda":           {"with-defaults"},
		"ietf-yang-library":           {},
		"ietf-datastores":             {},
	}
	if restconf {
		m["ietf-restconf-monitoring"] = []string{}
	}
	if inventory {
		m["riv-software-inventory"] = []string{}
	}
	return m
}

// schemas caches the compiled module set per feature set: every device of
// a test fleet compiles the same one.
var schemas sync.Map // string -> *schema.Set

// compileSchema compiles the embedded modules as this agent implements
// them.
func compileSchema(logs []attester.LogType, restconf, inventory, mtpm bool) (*schema.Set, error) {
	impl := implemented(logs, restconf, inventory, mtpm)
	key := strings.Join(impl["ietf-tpm-remote-attestation"], ",") + fmt.Sprintf(";restconf=%v;inventory=%v", restconf, inventory)
	if s, ok := schemas.Load(key); ok {
		return s.(*schema.Set), nil
	}
	var srcs []schema.Source
	for _, m := range yang.Modules() {
		srcs = append(srcs, schema.Source{Name: m.Name + "@" + m.Revision, Text: m.Text})
	}
	s, err := schema.Compile(srcs, schema.Options{Implement: impl})
	if err != nil {
		return nil, err
	}
	schemas.Store(key, s)
	return s, nil
}

// library returns the modules of the YANG library (RFC 8525): those the
// agent implements, and, import-only, those they import directly or
// not. Each is sorted by name. The schema does not change while the
// server runs, so the library and its content-id are worked out once.
func (s *Server) library() (impl, importOnly []*schema.Module) {
	s.libOnce.Do(s.buildLibrary)
	return s.lib.impl, s.lib.importOnly
}

// contentID identifies this library's content (it changes when modules or
// features do).
func (s *Server) contentID() string {
	s.libOnce.Do(s.buildLibrary)
	return s.lib.contentID
}

func (s *Server) buildLibrary() {
	var impl, importOnly []*schema.Module
	seen := map[*schema.Module]bool{}
	var visit func(m *schema.Module)
	visit = func(m *schema.Module) {
		for _, d := range m.Imports() {
			if !seen[d] {
				seen[d] = true
				if !d.Implemented {
					importOnly = append(importOnly, d)
				}
				visit(d)
			}
		}
	}
	for _, m := range s.schema.Modules() {
		if m.Implemented {
			impl = append(impl, m)
			visit(m)
		}
	}
	byName := func(ms []*schema.Module) {
		sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	}
	byName(impl)
	byName(importOnly)
	var b strings.Builder
	for _, m := range impl {
		b.WriteString(m.Name + "@" + m.Revision + ";" + strings.Join(m.Features, ",") + ";")
	}
	for _, m := range importOnly {
		b.WriteString("import:" + m.Name + "@" + m.Revision + ";")
	}
	h := sha256.Sum256([]byte(b.String()))
	// Clipped: callers append one list to the other.
	s.lib.impl, s.lib.importOnly, s.lib.contentID = slices.Clip(impl), slices.Clip(importOnly), hex.EncodeToString(h[:8])
}

// libraryModule returns the text of a module the library lists, at
// revision (any when empty), from the modules embedded in the binary.
func (s *Server) libraryModule(name, revision string) (yang.Module, bool) {
	impl, imp := s.library()
	for _, m := range append(impl, imp...) {
		if m.Name == name && (revision == "" || revision == m.Revision) {
			return yang.Find(m.Name, m.Revision)
		}
	}
	return yang.Module{}, false
}

func (s *Server) yangLibrary() *Node {
	set := El("module-set", Leaf("name", "riv"))
	impl, imp := s.library()
	for _, m := range impl {
		e := El("module", Leaf("name", m.Name), Leaf("revision", m.Revision), Leaf("namespace", m.Namespace))
		for _, f := range m.Features {
			e.Add(Leaf("feature", f))
		}
		set.Add(e)
	}
	for _, m := range imp {
		set.Add(El("import-only-module", Leaf("name", m.Name), Leaf("revision", m.Revision), Leaf("namespace", m.Namespace)))
	}
	lib := El("yang-library", set, El("schema", Leaf("name", "riv"), Leaf("module-set", "riv")))
	for _, d := range datastores {
		n := El("datastore", Leaf("name", "ds:"+d), Leaf("schema", "riv"))
		n.Children[0].Attrs = append(n.Children[0].Attrs, xmlns("ds", NSDatastores))
		lib.Add(n)
	}
	return lib.Add(Leaf("content-id", s.contentID())).InNS(NSYangLib)
}

// modulesState is RFC 8525's deprecated /modules-state (the RFC 7895
// library), kept for clients that predate NMDA: the same modules, with
// their conformance type.
func (s *Server) modulesState() *Node {
	st := El("modules-state", Leaf("module-set-id", s.contentID()))
	impl, imp := s.library()
	for _, m := range impl {
		e := El("module", Leaf("name", m.Name), Leaf("revision", m.Revision), Leaf("namespace", m.Namespace))
		for _, f := range m.Features {
			e.Add(Leaf("feature", f))
		}
		st.Add(e.Add(Leaf("conformance-type", "implement")))
	}
	for _, m := range imp {
		st.Add(El("module", Leaf("name", m.Name), Leaf("revision", m.Revision), Leaf("namespace", m.Namespace), Leaf("conformance-type", "import")))
	}
	return st.InNS(NSYangLib)
}

// monitoring is ietf-netconf-monitoring's netconf-state (RFC 6022): the
// capabilities, the running datastore, the schemas <get-schema> serves
// (every module of the YANG library), the open sessions and the
// counters.
func (s *Server) monitoring() *Node {
	caps := El("capabilities")
	for _, c := range s.capabilities() {
		caps.Add(Leaf("capability", c))
	}
	schemas := El("schemas")
	impl, imp := s.library()
	for _, m := range append(impl, imp...) {
		if _, ok := yang.Find(m.Name, m.Revision); !ok {
			continue
		}
		schemas.Add(El("schema", Leaf("identifier", m.Name), Leaf("version", m.Revision), Leaf("format", "yang"),
			Leaf("namespace", m.Namespace), Leaf("location", "NETCONF")))
	}
	sessions := El("sessions")
	s.mu.Lock()
	var open []*session
	for _, ss := range s.sessions {
		open = append(open, ss)
	}
	s.mu.Unlock()
	sort.Slice(open, func(i, j int) bool { return open[i].id < open[j].id })
	for _, ss := range open {
		e := El("session", Leaf("session-id", strconv.FormatUint(uint64(ss.id), 10)), Leaf("transport", ss.transport),
			Leaf("username", ss.user))
		if h := hostOf(ss.source); h != "" {
			e.Add(Leaf("source-host", h))
		}
		e.Add(Leaf("login-time", ss.login.UTC().Format(time.RFC3339)),
			Leaf("in-rpcs", strconv.FormatUint(uint64(ss.inRPC.Load()), 10)),
			Leaf("in-bad-rpcs", strconv.FormatUint(uint64(ss.inBadRPC.Load()), 10)),
			Leaf("out-rpc-errors", strconv.FormatUint(uint64(ss.outErrors.Load()), 10)),
			Leaf("out-notifications", "0"))
		sessions.Add(e)
	}
	st := &s.stats
	stats := El("statistics", Leaf("netconf-start-time", st.start.UTC().Format(time.RFC3339)),
		Leaf("in-bad-hellos", strconv.FormatUint(uint64(st.inBadHellos.Load()), 10)),
		Leaf("in-sessions", strconv.FormatUint(uint64(st.inSessions.Load()), 10)),
		Leaf("dropped-sessions", strconv.FormatUint(uint64(st.droppedSessions.Load()), 10)),
		Leaf("in-rpcs", strconv.FormatUint(uint64(st.inRPCs.Load()), 10)),
		Leaf("in-bad-rpcs", strconv.FormatUint(uint64(st.inBadRPCs.Load()), 10)),
		Leaf("out-rpc-errors", strconv.FormatUint(uint64(st.outRPCErrors.Load()), 10)),
		Leaf("out-notifications", "0"))
	ds := El("datastores", El("datastore", Leaf("name", "running")))
	return El("netconf-state", caps, ds, schemas, sessions, stats).InNS(NSMonitoring)
}

// hostOf is the address part of host:port.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// restconfState is ietf-restconf-monitoring's restconf-state: the RESTCONF
// server's capabilities; it offers no event streams.
func (s *Server) restconfState() *Node {
	caps := El("capabilities")
	for _, c := range s.cfg.RESTCONF {
		caps.Add(Leaf("capability", c))
	}
	return El("restconf-state", caps).InNS(NSRestconfMonitoring)
}
