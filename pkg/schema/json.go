package schema

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RFC 7951, the JSON encoding of YANG data: what the XML encoding leaves
// to the schema — lists and leaf-lists are arrays, 8- to 32-bit integers
// are numbers and wider ones strings, booleans are true and false, empty
// is [null], identities are "module:name", and a member is qualified with
// its module name where its module differs from its parent's.

// WriteJSON writes the XML instances xs, children of parent (nil for
// top-level data nodes), as the members of a JSON object (no braces), in
// the order their nodes first appear. parentMod is the module of the
// object they go in (nil at the top, where every member is qualified).
func (s *Set) WriteJSON(b *bytes.Buffer, parent *Node, xs []*XML, parentMod *Module) error {
	type group struct {
		sn    *Node
		items []*XML
	}
	var groups []*group
	by := map[*Node]*group{}
	for _, x := range xs {
		var sn *Node
		if parent == nil {
			sn = s.FindTop(x.NS, x.Name)
		} else {
			sn = parent.Child(x.NS, x.Name)
		}
		if sn == nil {
			return fmt.Errorf("%s (%s) is not in the schema", x.Name, x.NS)
		}
		g := by[sn]
		if g == nil {
			g = &group{sn: sn}
			by[sn] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, x)
	}
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		name := g.sn.Name
		if parentMod == nil || g.sn.Module != parentMod {
			name = g.sn.Module.Name + ":" + name
		}
		writeJSONString(b, name)
		b.WriteByte(':')
		switch {
		case g.sn.Kind == List || g.sn.Kind == LeafList:
			b.WriteByte('[')
			for k, x := range g.items {
				if k > 0 {
					b.WriteByte(',')
				}
				if err := s.jsonValue(b, g.sn, x); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case len(g.items) > 1:
			return fmt.Errorf("%s appears %d times but is a %s", g.sn.Name, len(g.items), g.sn.Kind)
		default:
			if err := s.jsonValue(b, g.sn, g.items[0]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Set) jsonValue(b *bytes.Buffer, sn *Node, x *XML) error {
	switch sn.Kind {
	case Container, List, Input, Output, RPC:
		b.WriteByte('{')
		if err := s.WriteJSON(b, sn, x.Children, sn.Module); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	case Leaf, LeafList:
		return s.jsonLeaf(b, sn.Type, x)
	}
	return fmt.Errorf("%s: %s has no JSON encoding here", sn.Name, sn.Kind)
}

func (s *Set) jsonLeaf(b *bytes.Buffer, t *Type, x *XML) error {
	canon, err := t.Check(s, x.Text, x.Resolve)
	if err != nil {
		return fmt.Errorf("%s: %w", x.Name, err)
	}
	switch t.Kind {
	case "union":
		for _, m := range t.Union {
			if _, err := m.Check(s, x.Text, x.Resolve); err == nil {
				return s.jsonLeaf(b, m, x)
			}
		}
	case "leafref":
		if t.Target != nil && t.Target.Type != nil {
			return s.jsonLeaf(b, t.Target.Type, x)
		}
	case "boolean":
		b.WriteString(canon)
		return nil
	case "empty":
		b.WriteString("[null]")
		return nil
	}
	if t.IsNumber() {
		b.WriteString(canon)
		return nil
	}
	writeJSONString(b, canon)
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// JSON input.

// jval is a JSON value with object members in order (duplicates are
// caught when it is read).
type jval struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys  []string
	vals  []*jval
	str   string // string, number text, "true"/"false"
	items []*jval
}

// maxJSONDepth and maxJSONValues bound untrusted JSON input.
const (
	maxJSONDepth  = 64
	maxJSONValues = 1 << 16
)

// readJSON reads one JSON value (and nothing after it).
func readJSON(raw []byte) (*jval, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	n := 0
	var read func(depth int) (*jval, error)
	read = func(depth int) (*jval, error) {
		if depth > maxJSONDepth {
			return nil, errors.New("JSON nested too deep")
		}
		if n++; n > maxJSONValues {
			return nil, errors.New("JSON holds too many values")
		}
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				v := &jval{kind: 'o'}
				seen := map[string]bool{}
				for d.More() {
					k, err := d.Token()
					if err != nil {
						return nil, err
					}
					key, _ := k.(string)
					if seen[key] {
						return nil, fmt.Errorf("member %q appears twice", key)
					}
					seen[key] = true
					c, err := read(depth + 1)
					if err != nil {
						return nil, err
					}
					v.keys, v.vals = append(v.keys, key), append(v.vals, c)
				}
				_, err := d.Token()
				return v, err
			case '[':
				v := &jval{kind: 'a'}
				for d.More() {
					c, err := read(depth + 1)
					if err != nil {
						return nil, err
					}
					v.items = append(v.items, c)
				}
				_, err := d.Token()
				return v, err
			}
		case string:
			return &jval{kind: 's', str: t}, nil
		case json.Number:
			return &jval{kind: 'n', str: t.String()}, nil
		case bool:
			return &jval{kind: 'b', str: strconv.FormatBool(t)}, nil
		case nil:
			return &jval{kind: 'z'}, nil
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	}
	v, err := read(0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("content after the JSON value")
	}
	return v, nil
}

// JSONInput converts the JSON input of an RPC ({"module:input": {...}},
// RFC 8040 §3.6.1; an empty body is an empty input) into the content of
// the operation's XML element, with the namespace declarations it needs,
// checking RFC 7951's encoding of every value strictly: a number where a
// string belongs ("pcr-index":["0"] is an error, as is a uint64 sent as
// a number), an unqualified member where the module changes, an
// unknown member. The XML then goes through Input like any NETCONF RPC.
func (s *Set) JSONInput(rpc *Node, raw []byte) (string, *Error) {
	var input *Node
	for _, c := range rpc.Children {
		if c.Kind == Input {
			input = c
		}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return "", nil
	}
	v, err := readJSON(raw)
	if err != nil {
		return "", &Error{Tag: "malformed-message", Message: "input is not JSON: " + err.Error()}
	}
	want := rpc.Module.Name + ":input"
	if v.kind != 'o' || len(v.keys) != 1 || v.keys[0] != want || v.vals[0].kind != 'o' {
		return "", &Error{Tag: "malformed-message", Message: fmt.Sprintf("the input must be one object {%q: {...}}", want)}
	}
	j := &jsonToXML{set: s, prefixes: map[string]string{}}
	var b strings.Builder
	if err := j.members(&b, input, v.vals[0], rpc.Module, rpc.Path()); err != nil {
		return "", err
	}
	var decl strings.Builder
	for ns, p := range j.prefixes {
		decl.WriteString(" xmlns:" + p + `="`)
		xml.EscapeText(&decl, []byte(ns))
		decl.WriteByte('"')
	}
	return "<" + rpc.Name + ` xmlns="` + rpc.Module.Namespace + `"` + decl.String() + ">" + b.String() + "</" + rpc.Name + ">", nil
}

type jsonToXML struct {
	set      *Set
	prefixes map[string]string // identity namespaces → prefixes declared on the operation
}

func (j *jsonToXML) members(b *strings.Builder, parent *Node, obj *jval, mod *Module, path string) *Error {
	for i, key := range obj.keys {
		m := mod
		name := key
		if p, n, ok := strings.Cut(key, ":"); ok {
			m = j.set.Module(p)
			if m == nil {
				return &Error{Tag: "unknown-namespace", Path: path, Message: fmt.Sprintf("member %q: no module %s", key, p), Info: badElement(key)}
			}
			name = n
		}
		sn := parent.Child(m.Namespace, name)
		if sn == nil {
			return &Error{Tag: "unknown-element", Path: path, Message: fmt.Sprintf("%s is not a child of %s here", key, parent.Name), Info: badElement(name)}
		}
		if sn.Module != mod && m == mod && !strings.Contains(key, ":") {
			// RFC 7951 §4: a member in another module than its parent's
			// names that module.
			return &Error{Tag: "malformed-message", Path: path, Message: fmt.Sprintf("member %q must be qualified as %s:%s", key, sn.Module.Name, name)}
		}
		cpath := path + "/" + sn.Module.Prefix + ":" + sn.Name
		open := "<" + name
		if sn.Module != mod {
			open += ` xmlns="` + sn.Module.Namespace + `"`
		}
		v := obj.vals[i]
		switch sn.Kind {
		case Container:
			if v.kind != 'o' {
				return typeErr(cpath, name, "an object")
			}
			b.WriteString(open + ">")
			if err := j.members(b, sn, v, sn.Module, cpath); err != nil {
				return err
			}
			b.WriteString("</" + name + ">")
		case List:
			if v.kind != 'a' {
				return typeErr(cpath, name, "an array of objects")
			}
			for _, e := range v.items {
				if e.kind != 'o' {
					return typeErr(cpath, name, "an array of objects")
				}
				b.WriteString(open + ">")
				if err := j.members(b, sn, e, sn.Module, cpath); err != nil {
					return err
				}
				b.WriteString("</" + name + ">")
			}
		case LeafList:
			if v.kind != 'a' {
				return typeErr(cpath, name, "an array")
			}
			for _, e := range v.items {
				if err := j.leaf(b, open, name, sn.Type, e, cpath); err != nil {
					return err
				}
			}
		case Leaf:
			if err := j.leaf(b, open, name, sn.Type, v, cpath); err != nil {
				return err
			}
		default:
			return &Error{Tag: "operation-not-supported", Path: cpath, Message: fmt.Sprintf("%s (%s) cannot be given in JSON here", name, sn.Kind)}
		}
	}
	return nil
}

func typeErr(path, name, want string) *Error {
	return &Error{Tag: "invalid-value", Path: path, Message: fmt.Sprintf("%s must be %s (RFC 7951)", name, want)}
}

// leaf writes one leaf value after checking its JSON type.
func (j *jsonToXML) leaf(b *strings.Builder, open, name string, t *Type, v *jval, path string) *Error {
	text, err := j.value(t, v)
	if err != nil {
		return &Error{Tag: "invalid-value", Path: path, Message: fmt.Sprintf("%s: %v (RFC 7951 §6)", name, err)}
	}
	if text == "" {
		b.WriteString(open + "/>")
		return nil
	}
	b.WriteString(open + ">")
	xml.EscapeText(b, []byte(text))
	b.WriteString("</" + name + ">")
	return nil
}

// value maps a JSON value of type t to its XML text.
func (j *jsonToXML) value(t *Type, v *jval) (string, error) {
	switch t.Kind {
	case "union":
		var last error
		for _, m := range t.Union {
			text, err := j.value(m, v)
			if err == nil {
				if _, cerr := m.Check(j.set, text, j.resolve); cerr == nil {
					return text, nil
				}
			}
			last = err
		}
		if last == nil {
			last = errors.New("matches no member of the union")
		}
		return "", last
	case "leafref":
		if t.Target != nil && t.Target.Type != nil {
			return j.value(t.Target.Type, v)
		}
	case "boolean":
		if v.kind != 'b' {
			return "", errors.New("a boolean must be true or false")
		}
		return v.str, nil
	case "empty":
		if v.kind != 'a' || len(v.items) != 1 || v.items[0].kind != 'z' {
			return "", errors.New("an empty leaf must be [null]")
		}
		return "", nil
	case "identityref":
		if v.kind != 's' {
			return "", errors.New("an identity must be a string")
		}
		mod, name, ok := strings.Cut(v.str, ":")
		if !ok {
			return "", fmt.Errorf("identity %q must name its module (module:identity)", v.str)
		}
		m := j.set.Module(mod)
		if m == nil {
			return "", fmt.Errorf("identity %q: no module %s", v.str, mod)
		}
		p := j.prefixes[m.Namespace]
		if p == "" {
			p = "p" + strconv.Itoa(len(j.prefixes))
			j.prefixes[m.Namespace] = p
		}
		return p + ":" + name, nil
	}
	if t.IsNumber() {
		if v.kind != 'n' {
			return "", fmt.Errorf("a %s must be a JSON number", t.Kind)
		}
		return v.str, nil
	}
	if v.kind != 's' {
		return "", fmt.Errorf("a %s must be a JSON string", t.Kind)
	}
	return v.str, nil
}

func (j *jsonToXML) resolve(p string) (string, bool) {
	for ns, q := range j.prefixes {
		if q == p {
			return ns, true
		}
	}
	return "", false
}
