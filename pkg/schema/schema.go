// Package schema compiles YANG 1.1 modules (RFC 7950) into schema trees and
// checks instance data against them: the XML encoding NETCONF carries
// (RFC 7950 §7, with the errors of §8.3.1 and §15) and the JSON encoding
// of RFC 7951. Servers use it to validate what clients send instead of
// hand-kept rules, and to type what they answer.
//
// The module texts are read with goyang's statement parser; resolving
// them into a tree (groupings, augments, refines, features, types,
// identities) is done here, because goyang v1.6.3 builds no AST for
// ietf-keystore@2024-10-10 (two augments under one uses), which RFC 9684
// imports (docs/adr/001-yang-schema.md).
//
// Supported: module, import, include-less modules, typedef, grouping,
// uses (refine, augment, if-feature, when), augment, container, list,
// leaf, leaf-list, choice, case, anydata, anyxml, rpc, action (skipped),
// notification (skipped), feature and if-feature expressions, identity
// and identityref, every built-in type with range, length, pattern,
// enum, bit and fraction-digits, leafref (typed as its target), union,
// must and when (an XPath 1.0 subset: see xpath.go), mandatory,
// min/max-elements, key, unique, default, config, presence. Not
// supported: submodules, deviations, YANG extensions' semantics.
package schema

import (
	"fmt"
	"sort"
	"strings"

	"github.com/openconfig/goyang/pkg/yang"
)

// Kind is the kind of a schema node.
type Kind uint8

// Node kinds.
const (
	Container Kind = iota + 1
	List
	Leaf
	LeafList
	Choice
	Case
	Anydata
	Anyxml
	RPC
	Input
	Output
)

var kindNames = [...]string{Container: "container", List: "list", Leaf: "leaf", LeafList: "leaf-list", Choice: "choice", Case: "case",
	Anydata: "anydata", Anyxml: "anyxml", RPC: "rpc", Input: "input", Output: "output"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Module is one compiled module.
type Module struct {
	Name, Prefix, Namespace, Revision string
	// YANGVersion is "1" or "1.1".
	YANGVersion string
	// Implemented modules contribute data nodes and RPCs; the others
	// only their typedefs, groupings and identities (import-only).
	Implemented bool
	// Features are the enabled features.
	Features []string

	root       *yang.Statement
	imports    map[string]*Module // by prefix; the module's own prefix too
	identities map[string]*Identity
	features   map[string]*yang.Statement
	enabled    map[string]bool
	top        *scope
	off        map[string]bool // top-level nodes an if-feature left out
}

// Identity is a YANG identity.
type Identity struct {
	Module *Module
	Name   string
	Bases  []*Identity
	stmt   *yang.Statement
}

// String is the identity's "module:name" form (RFC 7951 §6.8).
func (i *Identity) String() string { return i.Module.Name + ":" + i.Name }

// DerivedFrom reports whether i is derived from base, directly or not
// (RFC 7950 §9.10: an identity is not derived from itself).
func (i *Identity) DerivedFrom(base *Identity) bool {
	for _, b := range i.Bases {
		if b == base || b.DerivedFrom(base) {
			return true
		}
	}
	return false
}

// Node is a schema node.
type Node struct {
	Kind   Kind
	Name   string
	Module *Module // the namespace of the node
	Parent *Node
	// Children in schema order; choices and cases are nodes of their own.
	Children  []*Node
	Config    bool
	Mandatory bool
	Presence  bool
	// MinElements and MaxElements of a list or leaf-list (MaxElements 0:
	// unbounded).
	MinElements, MaxElements int
	Keys                     []string
	// Unique lists the unique statements of a list, each as descendant
	// paths (names separated by "/").
	Unique  [][]string
	Default []string
	Type    *Type
	Musts   []*Cond
	When    *Cond
	// Ext holds the extension statements used on the node, by
	// "module:keyword" (for example ietf-netconf-acm:default-deny-all).
	Ext map[string]string
	// off names the children an if-feature left out.
	off map[string]bool
}

// Cond is a must or when expression.
type Cond struct {
	Expr       string
	ErrMessage string
	ErrAppTag  string
	// onParent: the when of a uses or augment, shared by the nodes it
	// adds, whose context node is their parent (RFC 7950 §7.21.5).
	onParent bool
	x        expr
	mod      *Module // resolves the expression's prefixes
}

// Set is a compiled set of modules.
type Set struct {
	mods []*Module
	byNS map[string]*Module
	// Top are the top-level data nodes, RPCs the operations, of the
	// implemented modules.
	Top  []*Node
	RPCs []*Node
}

// Source is one module text.
type Source struct {
	Name string // the module name (informational; the text decides)
	Text string
}

// Options say which modules are implemented and with which features.
type Options struct {
	// Implement maps module name to its enabled features; modules not in
	// it are import-only.
	Implement map[string][]string
}

// Compile parses and resolves the module texts. Every module any of them
// imports must be among them.
func Compile(srcs []Source, o Options) (*Set, error) {
	s := &Set{byNS: map[string]*Module{}}
	byName := map[string]*Module{}
	for _, src := range srcs {
		st, err := yang.Parse(src.Text, src.Name)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", src.Name, err)
		}
		if len(st) != 1 || st[0].Keyword != "module" {
			return nil, fmt.Errorf("%s: not one module statement", src.Name)
		}
		m := &Module{Name: st[0].Argument, root: st[0], YANGVersion: "1", imports: map[string]*Module{},
			identities: map[string]*Identity{}, features: map[string]*yang.Statement{}, enabled: map[string]bool{}}
		if byName[m.Name] != nil {
			return nil, fmt.Errorf("module %s given twice", m.Name)
		}
		for _, c := range m.root.SubStatements() {
			switch c.Keyword {
			case "namespace":
				m.Namespace = c.Argument
			case "prefix":
				m.Prefix = c.Argument
			case "yang-version":
				m.YANGVersion = c.Argument
			case "revision":
				if c.Argument > m.Revision {
					m.Revision = c.Argument
				}
			case "feature":
				m.features[c.Argument] = c
			}
		}
		if feats, ok := o.Implement[m.Name]; ok {
			m.Implemented = true
			for _, f := range feats {
				if _, ok := m.features[f]; !ok {
					return nil, fmt.Errorf("module %s has no feature %q", m.Name, f)
				}
				m.enabled[f] = true
			}
			m.Features = append([]string(nil), feats...)
			sort.Strings(m.Features)
		}
		byName[m.Name] = m
		s.mods = append(s.mods, m)
		s.byNS[m.Namespace] = m
	}
	for name := range o.Implement {
		if byName[name] == nil {
			return nil, fmt.Errorf("implemented module %s is not among the sources", name)
		}
	}
	c := &compiler{set: s}
	for _, m := range s.mods {
		m.imports[m.Prefix] = m
		for _, st := range m.root.SubStatements() {
			if st.Keyword != "import" {
				continue
			}
			dep := byName[st.Argument]
			if dep == nil {
				return nil, fmt.Errorf("module %s imports %s, which is not among the sources", m.Name, st.Argument)
			}
			p := sub(st, "prefix")
			if p == "" {
				return nil, fmt.Errorf("module %s: import %s has no prefix", m.Name, st.Argument)
			}
			m.imports[p] = dep
		}
		m.top = newScope(m, nil, m.root)
	}
	for _, m := range s.mods {
		c.identities(m)
	}
	for _, m := range s.mods {
		c.identityBases(m)
	}
	for _, m := range s.mods {
		if m.Implemented {
			c.module(m)
		}
	}
	c.augments()
	c.finish()
	if len(c.errs) > 0 {
		return nil, c.err()
	}
	return s, nil
}

// Modules returns the compiled modules, in the order given.
func (s *Set) Modules() []*Module { return s.mods }

// Module returns the module called name, or nil.
func (s *Set) Module(name string) *Module {
	for _, m := range s.mods {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// ModuleByNS returns the module with namespace ns, or nil.
func (s *Set) ModuleByNS(ns string) *Module { return s.byNS[ns] }

// ModuleByPrefix returns the module whose own prefix is prefix (an
// implemented one first), or nil. Error paths are written with these.
func (s *Set) ModuleByPrefix(prefix string) *Module {
	var found *Module
	for _, m := range s.mods {
		if m.Prefix == prefix && (found == nil || m.Implemented && !found.Implemented) {
			found = m
		}
	}
	return found
}

// FindTop returns the top-level data node ns:name of an implemented module.
func (s *Set) FindTop(ns, name string) *Node { return find(s.Top, ns, name) }

// FindRPC returns the operation ns:name, or nil.
func (s *Set) FindRPC(ns, name string) *Node { return find(s.RPCs, ns, name) }

func find(nodes []*Node, ns, name string) *Node {
	for _, n := range nodes {
		if n.Name == name && n.Module.Namespace == ns {
			return n
		}
	}
	return nil
}

// Identity resolves a "module:name" identity.
func (s *Set) Identity(qname string) *Identity {
	mod, name, ok := strings.Cut(qname, ":")
	if !ok {
		return nil
	}
	if m := s.Module(mod); m != nil {
		return m.identities[name]
	}
	return nil
}

// Child returns the data child ns:name of n, looking through choices and
// cases (which have no instances of their own), or nil.
func (n *Node) Child(ns, name string) *Node {
	for _, c := range n.Children {
		switch c.Kind {
		case Choice, Case:
			if d := c.Child(ns, name); d != nil {
				return d
			}
		default:
			if c.Name == name && (ns == "" || c.Module.Namespace == ns) {
				return c
			}
		}
	}
	return nil
}

// DataChildren returns the data children of n, looking through choices
// and cases.
func (n *Node) DataChildren() []*Node {
	var out []*Node
	for _, c := range n.Children {
		switch c.Kind {
		case Choice, Case:
			out = append(out, c.DataChildren()...)
		default:
			out = append(out, c)
		}
	}
	return out
}

// Path is the node's schema path with module prefixes, as an error-path
// names it (RFC 6241 §4.3), e.g. /tpm:log-retrieval/tpm:log-selector.
func (n *Node) Path() string {
	var parts []string
	for x := n; x != nil; x = x.Parent {
		switch x.Kind {
		case Choice, Case, Input, Output:
			continue
		}
		parts = append(parts, x.Module.Prefix+":"+x.Name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// IsKey reports whether leaf n is a key of its list.
func (n *Node) IsKey() bool {
	if n.Kind != Leaf || n.Parent == nil || n.Parent.Kind != List {
		return false
	}
	for _, k := range n.Parent.Keys {
		if k == n.Name {
			return true
		}
	}
	return false
}

// Imports returns the modules m imports, sorted by name.
func (m *Module) Imports() []*Module {
	var out []*Module
	for _, d := range m.imports {
		if d != m {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Identity returns the module's identity called name, or nil.
func (m *Module) Identity(name string) *Identity { return m.identities[name] }

// FeatureEnabled reports whether the module's feature f is enabled.
func (m *Module) FeatureEnabled(f string) bool { return m.enabled[f] }

// sub returns the argument of st's first substatement kw, or "".
func sub(st *yang.Statement, kw string) string {
	for _, c := range st.SubStatements() {
		if c.Keyword == kw {
			return c.Argument
		}
	}
	return ""
}

func subs(st *yang.Statement, kw string) []*yang.Statement {
	var out []*yang.Statement
	for _, c := range st.SubStatements() {
		if c.Keyword == kw {
			out = append(out, c)
		}
	}
	return out
}
