package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/openconfig/goyang/pkg/yang"
)

type compiler struct {
	set  *Set
	errs []error
	// pending are the top-level augments of implemented modules, applied
	// once every tree exists (an augment may target another's nodes).
	pending []pendingAugment
	conds   []*Cond
	types   []*typeUse
}

type pendingAugment struct {
	mod *Module
	st  *yang.Statement
}

// typeUse is a leaf's type, resolved in finish (leafrefs need the tree).
type typeUse struct {
	n  *Node
	st *yang.Statement
	sc *scope
}

func (c *compiler) fail(st *yang.Statement, format string, a ...any) {
	loc := ""
	if st != nil {
		loc = st.Location() + ": "
	}
	c.errs = append(c.errs, fmt.Errorf("%s%s", loc, fmt.Sprintf(format, a...)))
}

func (c *compiler) err() error {
	if len(c.errs) > 10 {
		return fmt.Errorf("schema: %w (and %d more errors)", errors.Join(c.errs[:10]...), len(c.errs)-10)
	}
	return fmt.Errorf("schema: %w", errors.Join(c.errs...))
}

// scope is the lexical scope of typedefs and groupings (RFC 7950 §6.4.1:
// a definition is visible in the statement that holds it and below).
type scope struct {
	mod       *Module
	parent    *scope
	typedefs  map[string]*yang.Statement
	groupings map[string]*yang.Statement
}

func newScope(m *Module, parent *scope, st *yang.Statement) *scope {
	sc := &scope{mod: m, parent: parent}
	for _, d := range st.SubStatements() {
		switch d.Keyword {
		case "typedef":
			if sc.typedefs == nil {
				sc.typedefs = map[string]*yang.Statement{}
			}
			sc.typedefs[d.Argument] = d
		case "grouping":
			if sc.groupings == nil {
				sc.groupings = map[string]*yang.Statement{}
			}
			sc.groupings[d.Argument] = d
		}
	}
	if sc.typedefs == nil && sc.groupings == nil && parent != nil {
		return parent // nothing new defined here
	}
	return sc
}

// resolve finds prefix:name (or name) among the definitions get picks,
// and the scope the definition lives in.
func (sc *scope) resolve(ref string, get func(*scope) map[string]*yang.Statement) (*yang.Statement, *scope, bool) {
	prefix, name, ok := strings.Cut(ref, ":")
	if !ok {
		prefix, name = sc.mod.Prefix, ref
	}
	m := sc.mod.imports[prefix]
	if m == nil {
		return nil, nil, false
	}
	start := sc
	if m != sc.mod {
		start = m.top // another module's top-level definitions only
	}
	for s := start; s != nil; s = s.parent {
		if d := get(s)[name]; d != nil {
			return d, s, true
		}
	}
	return nil, nil, false
}

func (sc *scope) grouping(ref string) (*yang.Statement, *scope, bool) {
	return sc.resolve(ref, func(s *scope) map[string]*yang.Statement { return s.groupings })
}

func (sc *scope) typedef(ref string) (*yang.Statement, *scope, bool) {
	return sc.resolve(ref, func(s *scope) map[string]*yang.Statement { return s.typedefs })
}

// qname splits prefix:name and resolves the prefix in m.
func qname(m *Module, ref string) (*Module, string) {
	prefix, name, ok := strings.Cut(ref, ":")
	if !ok {
		return m, ref
	}
	return m.imports[prefix], name
}

func (c *compiler) identities(m *Module) {
	for _, st := range subs(m.root, "identity") {
		m.identities[st.Argument] = &Identity{Module: m, Name: st.Argument, stmt: st}
	}
}

func (c *compiler) identityBases(m *Module) {
	for _, id := range m.identities {
		for _, b := range subs(id.stmt, "base") {
			bm, name := qname(m, b.Argument)
			if bm == nil || bm.identities[name] == nil {
				c.fail(b, "identity %s: base %s not found", id.Name, b.Argument)
				continue
			}
			id.Bases = append(id.Bases, bm.identities[name])
		}
	}
}

// ctx is what a data definition inherits.
type ctx struct {
	ns     *Module // namespace of the nodes created
	sc     *scope  // lexical scope of prefixes and definitions
	config bool
	inOp   bool // within an RPC's input or output
}

func (c *compiler) module(m *Module) {
	x := ctx{ns: m, sc: m.top, config: true}
	root := &Node{Kind: Container, Module: m} // a holder for the top-level nodes
	c.defs(root, m.root, x)
	m.off = root.off
	for _, n := range root.Children {
		n.Parent = nil
		switch n.Kind {
		case RPC:
			c.set.RPCs = append(c.set.RPCs, n)
		default:
			c.set.Top = append(c.set.Top, n)
		}
	}
	for _, st := range subs(m.root, "augment") {
		c.pending = append(c.pending, pendingAugment{m, st})
	}
}

// defs compiles the data definitions among st's substatements into
// children of parent.
func (c *compiler) defs(parent *Node, st *yang.Statement, x ctx) {
	x.sc = newScope(x.sc.mod, x.sc, st)
	for _, d := range st.SubStatements() {
		c.def(parent, d, x)
	}
}

var dataKinds = map[string]Kind{"container": Container, "list": List, "leaf": Leaf, "leaf-list": LeafList, "choice": Choice,
	"case": Case, "anydata": Anydata, "anyxml": Anyxml, "rpc": RPC, "input": Input, "output": Output}

func (c *compiler) def(parent *Node, d *yang.Statement, x ctx) {
	if d.Keyword == "uses" {
		c.uses(parent, d, x)
		return
	}
	kind, ok := dataKinds[d.Keyword]
	if !ok {
		return // properties, definitions, notifications and actions
	}
	if !c.ifFeature(d, x.sc.mod) {
		// Remembered, so that a refine or augment of it is not an error.
		if parent.off == nil {
			parent.off = map[string]bool{}
		}
		parent.off[d.Argument] = true
		return
	}
	if parent.Kind == Choice && kind != Case {
		// The shorthand case (RFC 7950 §7.9.2).
		cs := &Node{Kind: Case, Name: d.Argument, Module: x.ns, Parent: parent, Config: x.config}
		parent.Children = append(parent.Children, cs)
		parent = cs
	}
	n := &Node{Kind: kind, Name: d.Argument, Module: x.ns, Parent: parent, Config: x.config}
	if kind == Input || kind == Output {
		n.Name = d.Keyword
	}
	if kind == RPC {
		n.Config = false
	}
	c.props(n, d, &x)
	parent.Children = append(parent.Children, n)
	switch kind {
	case RPC:
		in, out := false, false
		for _, s := range d.SubStatements() {
			in = in || s.Keyword == "input"
			out = out || s.Keyword == "output"
		}
		xo := x
		xo.inOp, xo.config = true, false
		xo.sc = newScope(x.sc.mod, x.sc, d)
		for _, s := range d.SubStatements() {
			if s.Keyword == "input" || s.Keyword == "output" {
				c.def(n, s, xo)
			}
		}
		// Every RPC has an input and an output, empty when not written.
		if !in {
			n.Children = append(n.Children, &Node{Kind: Input, Name: "input", Module: x.ns, Parent: n})
		}
		if !out {
			n.Children = append(n.Children, &Node{Kind: Output, Name: "output", Module: x.ns, Parent: n})
		}
	case Container, List, Choice, Case, Input, Output:
		c.defs(n, d, x)
	}
}

// props reads a node's properties; x.config is updated for its children.
func (c *compiler) props(n *Node, d *yang.Statement, x *ctx) {
	for _, s := range d.SubStatements() {
		switch s.Keyword {
		case "config":
			if !x.inOp {
				n.Config = s.Argument == "true"
				x.config = n.Config
			}
		case "mandatory":
			n.Mandatory = s.Argument == "true"
		case "presence":
			n.Presence = true
		case "min-elements":
			v, err := strconv.Atoi(s.Argument)
			if err != nil {
				c.fail(s, "min-elements %q", s.Argument)
			}
			n.MinElements = v
		case "max-elements":
			if s.Argument != "unbounded" {
				v, err := strconv.Atoi(s.Argument)
				if err != nil || v < 1 {
					c.fail(s, "max-elements %q", s.Argument)
				}
				n.MaxElements = v
			}
		case "key":
			n.Keys = strings.Fields(s.Argument)
		case "unique":
			var u []string
			for _, p := range strings.Fields(s.Argument) {
				var names []string
				for _, seg := range strings.Split(p, "/") {
					_, name := qname(x.sc.mod, seg)
					names = append(names, name)
				}
				u = append(u, strings.Join(names, "/"))
			}
			n.Unique = append(n.Unique, u)
		case "default":
			n.Default = append(n.Default, s.Argument)
		case "type":
			c.types = append(c.types, &typeUse{n: n, st: s, sc: x.sc})
		case "must":
			n.Musts = append(n.Musts, c.cond(s, x.sc.mod))
		case "when":
			n.When = c.cond(s, x.sc.mod)
		default:
			if p, kw, ok := strings.Cut(s.Keyword, ":"); ok {
				if m := x.sc.mod.imports[p]; m != nil {
					if n.Ext == nil {
						n.Ext = map[string]string{}
					}
					n.Ext[m.Name+":"+kw] = s.Argument
				}
			}
		}
	}
	if n.Kind == Input || n.Kind == Output {
		n.Config = false
	}
}

func (c *compiler) cond(s *yang.Statement, m *Module) *Cond {
	cd := &Cond{Expr: s.Argument, ErrMessage: sub(s, "error-message"), ErrAppTag: sub(s, "error-app-tag"), mod: m}
	c.conds = append(c.conds, cd)
	return cd
}

// uses expands a grouping in place (RFC 7950 §7.13): its nodes take the
// namespace of where it is used, its prefixes keep the grouping's module.
func (c *compiler) uses(parent *Node, u *yang.Statement, x ctx) {
	if !c.ifFeature(u, x.sc.mod) {
		return
	}
	g, gsc, ok := x.sc.grouping(u.Argument)
	if !ok {
		c.fail(u, "grouping %s not found", u.Argument)
		return
	}
	before := len(parent.Children)
	gx := x
	gx.sc = gsc
	c.defs(parent, g, gx) // in a choice, its nodes become shorthand cases
	added := parent.Children[before:]
	var when *Cond
	if w := subs(u, "when"); len(w) > 0 {
		when = c.cond(w[0], x.sc.mod)
		when.onParent = true
	}
	for _, n := range added {
		if when != nil && n.When == nil {
			n.When = when
		}
	}
	for _, r := range subs(u, "refine") {
		if t := c.descend(parent, added, r.Argument, r); t != nil {
			c.refine(t, r, x)
		}
	}
	for _, a := range subs(u, "augment") {
		if t := c.descend(parent, added, a.Argument, a); t != nil {
			c.augmentInto(t, a, x.ns, x.sc)
		}
	}
}

// descend resolves a descendant schema node identifier (choices and
// cases included) starting among nodes, children of parent. Names are
// matched by their local part: nodes from a grouping take the namespace
// of where it is used, while the identifier's prefixes are the
// grouping's. A node its if-feature left out is skipped quietly.
func (c *compiler) descend(parent *Node, nodes []*Node, path string, st *yang.Statement) *Node {
	cur, holder := nodes, parent
	var t *Node
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		_, name, ok := strings.Cut(seg, ":")
		if !ok {
			name = seg
		}
		t = nil
		for _, n := range cur {
			if n.Name == name {
				t = n
				break
			}
		}
		if t == nil {
			if !holder.off[name] {
				c.fail(st, "%s: no schema node %s", path, seg)
			}
			return nil
		}
		cur, holder = t.Children, t
	}
	return t
}

func (c *compiler) refine(t *Node, r *yang.Statement, x ctx) {
	if !c.ifFeature(r, x.sc.mod) {
		c.remove(t)
		return
	}
	if len(subs(r, "default")) > 0 {
		t.Default = nil // a refined default replaces the grouping's
	}
	rx := x
	rx.config, rx.inOp = t.Config, inOp(t)
	c.props(t, r, &rx)
	if !t.Config {
		setConfig(t, false)
	}
}

func setConfig(n *Node, v bool) {
	n.Config = v
	for _, c := range n.Children {
		setConfig(c, v)
	}
}

func (c *compiler) remove(t *Node) {
	p := t.Parent
	if p == nil {
		return
	}
	for i, ch := range p.Children {
		if ch == t {
			p.Children = append(p.Children[:i:i], p.Children[i+1:]...)
			return
		}
	}
}

// augmentInto adds an augment's definitions to target t.
func (c *compiler) augmentInto(t *Node, a *yang.Statement, ns *Module, sc *scope) {
	if !c.ifFeature(a, sc.mod) {
		return
	}
	x := ctx{ns: ns, sc: sc, config: t.Config, inOp: t.Kind == Input || t.Kind == Output || inOp(t)}
	if x.inOp {
		x.config = false
	}
	before := len(t.Children)
	c.defs(t, a, x)
	if w := subs(a, "when"); len(w) > 0 {
		when := c.cond(w[0], sc.mod)
		when.onParent = true
		for _, n := range t.Children[before:] {
			if n.When == nil {
				n.When = when
			}
		}
	}
}

func inOp(n *Node) bool {
	for ; n != nil; n = n.Parent {
		if n.Kind == Input || n.Kind == Output || n.Kind == RPC {
			return true
		}
	}
	return false
}

// augments applies the implemented modules' top-level augments, in rounds
// (an augment may target what another adds).
func (c *compiler) augments() {
	todo := c.pending
	for len(todo) > 0 {
		var next []pendingAugment
		for _, p := range todo {
			t, targetMod, targetOff := c.absolute(p.mod, p.st.Argument)
			switch {
			case t != nil:
				c.augmentInto(t, p.st, p.mod, p.mod.top)
			case targetMod != nil && !targetMod.Implemented, targetMod != nil && targetOff:
				// Augmenting a module this set only imports, or a node its
				// if-feature left out: its nodes do not exist here, nor do
				// the augment's.
			default:
				next = append(next, p)
			}
		}
		if len(next) == len(todo) {
			for _, p := range next {
				c.fail(p.st, "augment target %s not found", p.st.Argument)
			}
			return
		}
		todo = next
	}
}

// absolute resolves an absolute schema node identifier, in m's prefixes:
// the node, the module of its first step, and whether an if-feature left
// a node on the way out.
func (c *compiler) absolute(m *Module, path string) (*Node, *Module, bool) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	first, _ := qname(m, segs[0])
	if first == nil {
		return nil, nil, false
	}
	cur := append(append([]*Node(nil), c.set.Top...), c.set.RPCs...)
	off := first.off
	var t *Node
	for _, seg := range segs {
		sm, name := qname(m, seg)
		t = nil
		for _, n := range cur {
			if n.Name == name && n.Module == sm {
				t = n
			}
		}
		if t == nil {
			return nil, first, off[name]
		}
		cur, off = t.Children, t.off
	}
	return t, first, false
}

// ifFeature evaluates the if-feature statements of st (RFC 7950 §7.20.2).
func (c *compiler) ifFeature(st *yang.Statement, m *Module) bool {
	for _, f := range subs(st, "if-feature") {
		v, err := c.featureExpr(f.Argument, m, 0)
		if err != nil {
			c.fail(f, "if-feature %q: %v", f.Argument, err)
			return false
		}
		if !v {
			return false
		}
	}
	return true
}

// featureExpr evaluates an if-feature expression: names (prefixed or not)
// combined with not, and, or and parentheses.
func (c *compiler) featureExpr(e string, m *Module, depth int) (bool, error) {
	if depth > 16 {
		return false, errors.New("features nest too deep")
	}
	toks := strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(e))
	p := &featParser{toks: toks, eval: func(ref string) (bool, error) {
		fm, name := qname(m, ref)
		if fm == nil {
			return false, fmt.Errorf("unknown prefix in %q", ref)
		}
		st := fm.features[name]
		if st == nil {
			return false, fmt.Errorf("no feature %q in %s", name, fm.Name)
		}
		if !fm.enabled[name] {
			return false, nil
		}
		// A feature is only available when its own if-features are.
		for _, f := range subs(st, "if-feature") {
			v, err := c.featureExpr(f.Argument, fm, depth+1)
			if err != nil || !v {
				return false, err
			}
		}
		return true, nil
	}}
	v, err := p.or()
	if err == nil && p.i != len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	return v, err
}

type featParser struct {
	toks []string
	i    int
	eval func(string) (bool, error)
}

func (p *featParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *featParser) or() (bool, error) {
	v, err := p.and()
	for err == nil && p.peek() == "or" {
		p.i++
		var w bool
		w, err = p.and()
		v = v || w
	}
	return v, err
}

func (p *featParser) and() (bool, error) {
	v, err := p.factor()
	for err == nil && p.peek() == "and" {
		p.i++
		var w bool
		w, err = p.factor()
		v = v && w
	}
	return v, err
}

func (p *featParser) factor() (bool, error) {
	switch t := p.peek(); t {
	case "":
		return false, errors.New("expression ends early")
	case "not":
		p.i++
		v, err := p.factor()
		return !v, err
	case "(":
		p.i++
		v, err := p.or()
		if err == nil && p.peek() != ")" {
			err = errors.New("missing )")
		}
		p.i++
		return v, err
	default:
		p.i++
		return p.eval(t)
	}
}

// finish resolves types and compiles expressions once every tree exists.
func (c *compiler) finish() {
	for _, tu := range c.types {
		t, err := c.resolveType(tu.st, tu.sc, 0)
		if err != nil {
			c.fail(tu.st, "%s %s: %v", tu.n.Kind, tu.n.Name, err)
			continue
		}
		tu.n.Type = t
	}
	for _, tu := range c.types {
		if tu.n.Type != nil {
			if err := c.leafrefs(tu.n, tu.n.Type); err != nil {
				c.fail(tu.st, "%s %s: %v", tu.n.Kind, tu.n.Name, err)
			}
		}
	}
	for _, cd := range c.conds {
		x, err := parseXPath(cd.Expr)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("%s: XPath %q: %v", cd.mod.Name, cd.Expr, err))
			continue
		}
		cd.x = x
	}
	// Key leaves are mandatory in every entry.
	var walk func([]*Node)
	walk = func(ns []*Node) {
		for _, n := range ns {
			if n.Kind == List {
				for _, k := range n.Keys {
					if kn := n.Child(n.Module.Namespace, k); kn != nil {
						kn.Mandatory = true
					} else if kn := n.Child("", k); kn != nil {
						kn.Mandatory = true
					}
				}
			}
			walk(n.Children)
		}
	}
	walk(c.set.Top)
	walk(c.set.RPCs)
}
