package schema

import (
	"fmt"
	"slices"
	"strings"
)

// Elem is a node of instance data checked against the schema.
type Elem struct {
	Schema   *Node // nil for the root of an XPath tree
	Name, NS string
	// Value is a leaf's or leaf-list entry's canonical value (identities
	// as "module:name").
	Value    string
	Children []*Elem
	Parent   *Elem
	// XML is the element as received: the content of an anydata or
	// anyxml node, and the attributes of any node. Nil for defaults.
	XML *XML
	// Default is set on a leaf the schema's default supplied.
	Default bool
}

// Child returns e's first child called name, or nil.
func (e *Elem) Child(name string) *Elem {
	for _, c := range e.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// All returns e's children called name.
func (e *Elem) All(name string) []*Elem {
	var out []*Elem
	for _, c := range e.Children {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// Leaf returns the value of e's child leaf name and whether it is there.
func (e *Elem) Leaf(name string) (string, bool) {
	if c := e.Child(name); c != nil {
		return c.Value, true
	}
	return "", false
}

// NSYANG is the namespace of the error-info elements RFC 7950 §15 defines
// (non-unique, missing-choice).
const NSYANG = "urn:ietf:params:xml:ns:yang:1"

// NSBase is the NETCONF base namespace (error-info bad-element and kin).
const NSBase = "urn:ietf:params:xml:ns:netconf:base:1.0"

// Error is a validation failure, as an rpc-error reports it (RFC 6241
// §4.3 and App. A; RFC 7950 §8.3.1 and §15).
type Error struct {
	Tag     string // error-tag
	AppTag  string // error-app-tag
	Path    string // error-path, with the modules' prefixes
	Message string
	Info    []Info // error-info
}

// Type is the error-type the error is reported with (RFC 6241 App. A):
// a message that is not well-formed is an rpc error, a namespace the
// server does not know a protocol one, and what the schema refuses in the
// content an application one.
func (e *Error) Type() string {
	switch e.Tag {
	case "malformed-message":
		return "rpc"
	case "unknown-namespace":
		return "protocol"
	}
	return "application"
}

// Info is one error-info child.
type Info struct {
	Name, NS, Value string
}

func (e *Error) Error() string {
	s := e.Tag + ": " + e.Message
	if e.Path != "" {
		s += " (" + e.Path + ")"
	}
	return s
}

func badElement(name string) []Info { return []Info{{Name: "bad-element", NS: NSBase, Value: name}} }

// validator checks one instance tree.
type validator struct {
	set *Set
	// conds are the elements whose when or must expressions are
	// evaluated once the tree is complete.
	conds []*Elem
}

// Input checks op, an RPC's operation element as received, against the
// input of rpc (RFC 7950 §7.14.2, §8.3.1): elements the schema does not
// define (or defines under a disabled feature) are unknown-element, a
// value that does not fit its type is invalid-value, a leaf given twice
// or two cases of one choice are bad-element, a mandatory node missing is
// missing-element (data-missing with missing-choice for a choice), and
// unique, min-elements, max-elements and must are checked as §15 says.
// Defaults are filled in. data supplies the operational state for the
// expressions (called only when one is evaluated).
func (s *Set) Input(rpc *Node, op *XML, data func() []*Elem) (*Elem, *Error) {
	var input *Node
	for _, c := range rpc.Children {
		if c.Kind == Input {
			input = c
		}
	}
	v := &validator{set: s}
	e := &Elem{Schema: rpc, Name: rpc.Name, NS: rpc.Module.Namespace, XML: op}
	if err := v.attrs(op, e, rpc.Path()); err != nil {
		return nil, err
	}
	if err := v.children(input, op, e, rpc.Path()); err != nil {
		return nil, err
	}
	if err := v.conditions(e, data); err != nil {
		return nil, err
	}
	return e, nil
}

// Data checks instance data (the top-level elements of a datastore, as
// the server itself built them) for types only and returns it as Elems,
// for XPath expressions that refer to it.
func (s *Set) Data(tops []*XML) ([]*Elem, *Error) {
	v := &validator{set: s}
	var out []*Elem
	for _, x := range tops {
		sn := s.FindTop(x.NS, x.Name)
		if sn == nil {
			return nil, &Error{Tag: "unknown-element", Message: fmt.Sprintf("no top-level node %s in %s", x.Name, x.NS), Info: badElement(x.Name)}
		}
		e := &Elem{Schema: sn, Name: x.Name, NS: x.NS, XML: x}
		if err := v.content(sn, x, e, sn.Path(), false); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (v *validator) attrs(x *XML, e *Elem, path string) *Error {
	for _, a := range x.Attrs {
		return &Error{Tag: "unknown-attribute", Path: path, Message: fmt.Sprintf("attribute %s is not allowed on %s", a.Name, x.Name),
			Info: []Info{{Name: "bad-attribute", NS: NSBase, Value: a.Name}, {Name: "bad-element", NS: NSBase, Value: x.Name}}}
	}
	return nil
}

// children checks the children of x, an instance of the container-like
// schema node sn, into e.
func (v *validator) children(sn *Node, x *XML, e *Elem, path string) *Error {
	return v.childrenOpt(sn, x, e, path, true)
}

func (v *validator) childrenOpt(sn *Node, x *XML, e *Elem, path string, strict bool) *Error {
	if strings.TrimSpace(x.Text) != "" {
		return &Error{Tag: "bad-element", Path: path, Message: fmt.Sprintf("%s holds text, but it is a %s", x.Name, sn.Kind), Info: badElement(x.Name)}
	}
	counts := map[*Node]int{}
	cases := map[*Node]*Node{} // choice → the case given
	for _, c := range x.Children {
		cpath := path + "/" + prefixOf(v.set, c.NS) + c.Name
		if v.set.byNS[c.NS] == nil {
			return &Error{Tag: "unknown-namespace", Path: path, Message: fmt.Sprintf("namespace %q of %s is not one this server implements", c.NS, c.Name),
				Info: []Info{{Name: "bad-element", NS: NSBase, Value: c.Name}, {Name: "bad-namespace", NS: NSBase, Value: c.NS}}}
		}
		sc := sn.Child(c.NS, c.Name)
		if sc == nil {
			return &Error{Tag: "unknown-element", Path: cpath, Message: fmt.Sprintf("%s is not a child of %s here", c.Name, nameOf(sn, x)), Info: badElement(c.Name)}
		}
		for a, in := sc.Parent, sc; a != nil && a != sn; in, a = a, a.Parent {
			if a.Kind != Choice {
				continue
			}
			if prev := cases[a]; prev != nil && prev != in {
				return &Error{Tag: "bad-element", Path: cpath, Message: fmt.Sprintf("%s is in case %s of choice %s, but case %s was given", c.Name, in.Name, a.Name, prev.Name), Info: badElement(c.Name)}
			}
			cases[a] = in
		}
		counts[sc]++
		if counts[sc] > 1 && sc.Kind != List && sc.Kind != LeafList {
			return &Error{Tag: "bad-element", Path: cpath, Message: fmt.Sprintf("%s appears more than once", c.Name), Info: badElement(c.Name)}
		}
		ce := &Elem{Schema: sc, Name: c.Name, NS: c.NS, Parent: e, XML: c}
		if sc.Kind != Anydata && sc.Kind != Anyxml {
			if err := v.attrs(c, ce, cpath); err != nil && strict {
				return err
			}
		}
		if err := v.content(sc, c, ce, cpath, strict); err != nil {
			return err
		}
		e.Children = append(e.Children, ce)
		if sc.When != nil || len(sc.Musts) > 0 {
			v.conds = append(v.conds, ce)
		}
	}
	if !strict {
		return nil
	}
	return v.complete(sn, e, counts, cases, path)
}

// content checks one element against its schema node.
func (v *validator) content(sn *Node, x *XML, e *Elem, path string, strict bool) *Error {
	switch sn.Kind {
	case Leaf, LeafList:
		if x.HasElements() {
			return &Error{Tag: "bad-element", Path: path, Message: fmt.Sprintf("%s is a %s: it holds a value, not elements", x.Name, sn.Kind), Info: badElement(x.Name)}
		}
		val, err := sn.Type.Check(v.set, x.Text, x.Resolve)
		if err != nil {
			ve, _ := err.(*ValueError)
			e := &Error{Tag: "invalid-value", Path: path, Message: fmt.Sprintf("%s: %v", x.Name, err)}
			if ve != nil {
				e.AppTag = ve.AppTag
			}
			return e
		}
		e.Value = val
	case Container, List:
		return v.childrenOpt(sn, x, e, path, strict)
	case Anydata, Anyxml:
	}
	return nil
}

// complete checks what an instance of sn must have once its children are
// read, and adds the defaults.
func (v *validator) complete(sn *Node, e *Elem, counts map[*Node]int, cases map[*Node]*Node, path string) *Error {
	var walk func(n *Node) *Error
	walk = func(n *Node) *Error {
		for _, d := range n.Children {
			switch d.Kind {
			case Choice:
				cs := cases[d]
				if cs == nil && d.Mandatory {
					return &Error{Tag: "data-missing", AppTag: "missing-choice", Path: path, Message: fmt.Sprintf("one case of choice %s is required", d.Name),
						Info: []Info{{Name: "missing-choice", NS: NSYANG, Value: d.Name}}}
				}
				if cs == nil && len(d.Default) > 0 {
					for _, c := range d.Children {
						if c.Name == d.Default[0] {
							cs = c
						}
					}
					if cs != nil && cs.Kind == Case {
						v.defaults(cs, e, counts)
					}
					continue
				}
				if cs != nil {
					if err := walk(cs); err != nil {
						return err
					}
				}
			case Case:
				if err := walk(d); err != nil {
					return err
				}
			default:
				if counts[d] == 0 && mandatory(d) {
					// Name the mandatory node itself, inside the
					// non-presence containers that hold it.
					m, mpath := d, path
					for m.Kind == Container {
						next := firstMandatory(m)
						if next == nil {
							break
						}
						mpath += "/" + m.Module.Prefix + ":" + m.Name
						m = next
					}
					return &Error{Tag: "missing-element", Path: mpath, Message: fmt.Sprintf("%s is required", m.Name), Info: badElement(m.Name)}
				}
				if (d.Kind == List || d.Kind == LeafList) && counts[d] > 0 {
					if d.MinElements > 0 && counts[d] < d.MinElements {
						return &Error{Tag: "operation-failed", AppTag: "too-few-elements", Path: path + "/" + d.Module.Prefix + ":" + d.Name,
							Message: fmt.Sprintf("%s has %d entries, at least %d are required", d.Name, counts[d], d.MinElements)}
					}
				}
				if (d.Kind == List || d.Kind == LeafList) && d.MaxElements > 0 && counts[d] > d.MaxElements {
					return &Error{Tag: "operation-failed", AppTag: "too-many-elements", Path: path + "/" + d.Module.Prefix + ":" + d.Name,
						Message: fmt.Sprintf("%s has %d entries, at most %d are allowed", d.Name, counts[d], d.MaxElements)}
				}
				if d.Kind == List {
					if err := v.uniqueness(d, e, path); err != nil {
						return err
					}
				}
				// Leaf-list values are unique in configuration (RFC 7950
				// §7.7), not in state or operation input.
				if d.Kind == LeafList && d.Config && counts[d] > 1 {
					seen := map[string]bool{}
					for _, c := range e.Children {
						if c.Schema == d {
							if seen[c.Value] {
								return &Error{Tag: "bad-element", Path: path + "/" + d.Module.Prefix + ":" + d.Name, Message: fmt.Sprintf("%s lists %q twice", d.Name, c.Value), Info: badElement(d.Name)}
							}
							seen[c.Value] = true
						}
					}
				}
			}
		}
		return nil
	}
	if err := walk(sn); err != nil {
		return err
	}
	v.defaults(sn, e, counts)
	return nil
}

// defaults adds the default leaves of n (not inside choices, whose cases
// complete handles) that e lacks.
func (v *validator) defaults(n *Node, e *Elem, counts map[*Node]int) {
	for _, d := range n.Children {
		if d.Kind != Leaf || len(d.Default) == 0 || counts[d] > 0 {
			continue
		}
		val, err := d.Type.Check(v.set, d.Default[0], func(p string) (string, bool) {
			if m := d.Module.imports[p]; m != nil {
				return m.Namespace, true
			}
			return "", false
		})
		if err != nil {
			continue
		}
		e.Children = append(e.Children, &Elem{Schema: d, Name: d.Name, NS: d.Module.Namespace, Value: val, Parent: e, Default: true})
	}
}

// mandatory reports whether a node must be present (RFC 7950 §3: a
// mandatory leaf, choice or anydata, a list or leaf-list with
// min-elements, a non-presence container with a mandatory child).
func mandatory(n *Node) bool {
	switch n.Kind {
	case Leaf, Choice, Anydata, Anyxml:
		return n.Mandatory
	case List, LeafList:
		return n.MinElements > 0
	case Container:
		if n.Presence {
			return false
		}
		for _, c := range n.Children {
			if mandatory(c) {
				return true
			}
		}
	}
	return false
}

// firstMandatory returns the first child of container n that makes it
// mandatory, or nil.
func firstMandatory(n *Node) *Node {
	for _, c := range n.Children {
		if mandatory(c) {
			return c
		}
	}
	return nil
}

// uniqueness checks a list's unique statements over its entries in e
// (RFC 7950 §7.8.3, errors §15.1), and that keyed entries differ.
func (v *validator) uniqueness(list *Node, e *Elem, path string) *Error {
	var entries []*Elem
	for _, c := range e.Children {
		if c.Schema == list {
			entries = append(entries, c)
		}
	}
	if len(entries) < 2 {
		return nil
	}
	checks := list.Unique
	if len(list.Keys) > 0 {
		checks = append([][]string{list.Keys}, checks...)
	}
	for k, u := range checks {
		seen := map[string]bool{}
		for _, en := range entries {
			var vals []string
			complete := true
			for _, p := range u {
				val, ok := descendantValue(en, p)
				complete = complete && ok
				vals = append(vals, val)
			}
			if !complete {
				continue // unique applies to entries that have every leaf
			}
			key := strings.Join(vals, "\x00")
			if seen[key] {
				lp := path + "/" + list.Module.Prefix + ":" + list.Name
				if k == 0 && len(list.Keys) > 0 {
					return &Error{Tag: "bad-element", Path: lp, Message: fmt.Sprintf("two %s entries have the key %s", list.Name, strings.Join(vals, ", ")), Info: badElement(list.Name)}
				}
				info := make([]Info, len(u))
				for i, p := range u {
					info[i] = Info{Name: "non-unique", NS: NSYANG, Value: lp + "/" + p}
				}
				return &Error{Tag: "operation-failed", AppTag: "data-not-unique", Path: lp,
					Message: fmt.Sprintf("two %s entries have the same %s (%s)", list.Name, strings.Join(u, ", "), strings.Join(vals, ", ")), Info: info}
			}
			seen[key] = true
		}
	}
	return nil
}

func descendantValue(e *Elem, p string) (string, bool) {
	cur := e
	for _, seg := range strings.Split(p, "/") {
		cur = cur.Child(seg)
		if cur == nil {
			return "", false
		}
	}
	return cur.Value, true
}

// conditions evaluates the when and must expressions of the elements
// read, in the tree of the input and the operational state.
func (v *validator) conditions(op *Elem, data func() []*Elem) *Error {
	if len(v.conds) == 0 {
		return nil
	}
	root := &Elem{}
	if data != nil {
		for _, t := range data() {
			c := *t
			c.Parent = root
			root.Children = append(root.Children, &c)
		}
	}
	op.Parent = root
	root.Children = append(root.Children, op)
	defer func() { op.Parent = nil }()
	for _, e := range v.conds {
		sn := e.Schema
		if sn.When != nil {
			ok, err := v.set.Eval(sn.When, root, whenContext(e))
			if err != nil {
				return &Error{Tag: "operation-failed", Path: elemPath(v.set, e), Message: fmt.Sprintf("when %q: %v", sn.When.Expr, err)}
			}
			if !ok {
				return &Error{Tag: "unknown-element", Path: elemPath(v.set, e), Message: fmt.Sprintf("%s is not allowed here (when %s is false)", e.Name, sn.When.Expr), Info: badElement(e.Name)}
			}
		}
		for _, m := range sn.Musts {
			ok, err := v.set.Eval(m, root, e)
			if err != nil {
				return &Error{Tag: "operation-failed", Path: elemPath(v.set, e), Message: fmt.Sprintf("must %q: %v", m.Expr, err)}
			}
			if !ok {
				// RFC 7950 §15.5 (and §7.5.4.2 for a must's own app tag).
				tag := m.ErrAppTag
				if tag == "" {
					tag = "must-violation"
				}
				msg := m.ErrMessage
				if msg == "" {
					msg = fmt.Sprintf("%s violates the constraint %s", e.Name, m.Expr)
				}
				return &Error{Tag: "operation-failed", AppTag: tag, Path: elemPath(v.set, e), Message: msg}
			}
		}
	}
	return nil
}

// whenContext is the context node of e's when expression: e itself, or
// for a when that came with a uses or augment, e's parent (RFC 7950
// §7.21.5).
func whenContext(e *Elem) *Elem {
	if e.Schema.When.onParent && e.Parent != nil {
		return e.Parent
	}
	return e
}

// elemPath is the instance path of e with the modules' prefixes.
func elemPath(s *Set, e *Elem) string {
	var parts []string
	for x := e; x != nil && x.Schema != nil; x = x.Parent {
		parts = append(parts, prefixOf(s, x.NS)+x.Name)
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

func prefixOf(s *Set, ns string) string {
	if m := s.byNS[ns]; m != nil {
		return m.Prefix + ":"
	}
	return ""
}

func nameOf(sn *Node, x *XML) string {
	if sn.Kind == Input {
		return sn.Parent.Name
	}
	return x.Name
}
