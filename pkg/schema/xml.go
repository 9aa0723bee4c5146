package schema

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// XML is an element of a parsed XML document with its names resolved:
// what NETCONF messages are read into before they are checked against a
// schema. Untrusted.
type XML struct {
	Name, NS string // local name and namespace
	Prefix   string // as written
	Attrs    []Attr // attributes other than namespace declarations
	Text     string // the character data directly inside, concatenated
	Children []*XML
	Parent   *XML
	// Decl holds the namespace declarations made on this element
	// (prefix to namespace, "" the default); what is in scope is found
	// by walking up (Resolve). Keeping only the element's own
	// declarations keeps memory linear in the document: copying the
	// scope into every element that declares something would let a
	// small message with many prefixes and many elements take gigabytes.
	Decl map[string]string
}

// xmlNS is the namespace the xml prefix is bound to (Namespaces in XML
// §3).
const xmlNS = "http://www.w3.org/XML/1998/namespace"

// Attr is an attribute with its namespace resolved ("" for none).
type Attr struct {
	Name, NS, Value string
	Prefix          string // as written, when parsed
}

// Limits bound what ParseXML accepts from an untrusted peer.
type Limits struct {
	Depth    int // element nesting (default 64)
	Elements int // elements in the document (default 1<<20)
	// Decls bounds namespace declarations in the document, Attrs the
	// other attributes of one element (defaults 65536, 64). Each element keeps
	// only its own declarations, so these bound memory linearly.
	Decls, Attrs int
}

// ErrXML wraps every failure of ParseXML.
var ErrXML = errors.New("malformed XML")

// ParseXML reads one XML document (a single root element) strictly:
// well-formed, every prefix declared, no DTD, within limits. Text is
// collected in linear time however it is split.
func ParseXML(b []byte, lim Limits) (*XML, error) {
	if lim.Depth == 0 {
		lim.Depth = 64
	}
	if lim.Elements == 0 {
		lim.Elements = 1 << 20
	}
	if lim.Decls == 0 {
		lim.Decls = 1 << 16
	}
	if lim.Attrs == 0 {
		lim.Attrs = 64
	}
	decls := 0
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var stack []*XML
	var texts []*strings.Builder
	var root *XML
	count := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			if root == nil || len(stack) > 0 {
				return nil, fmt.Errorf("%w: document ends inside an element", ErrXML)
			}
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrXML, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= lim.Depth {
				return nil, fmt.Errorf("%w: elements nested deeper than %d", ErrXML, lim.Depth)
			}
			if count++; count > lim.Elements {
				return nil, fmt.Errorf("%w: more than %d elements", ErrXML, lim.Elements)
			}
			if root != nil && len(stack) == 0 {
				return nil, fmt.Errorf("%w: more than one root element", ErrXML)
			}
			n := &XML{Name: t.Name.Local, Prefix: t.Name.Space}
			if len(stack) > 0 {
				n.Parent = stack[len(stack)-1]
			}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					p := a.Name.Local
					if a.Name.Space == "" {
						p = ""
					}
					if p == "xml" || p == "xmlns" {
						return nil, fmt.Errorf("%w: prefix %q cannot be declared", ErrXML, p)
					}
					if _, dup := n.Decl[p]; dup {
						return nil, fmt.Errorf("%w: <%s> declares prefix %q twice", ErrXML, t.Name.Local, p)
					}
					if decls++; decls > lim.Decls {
						return nil, fmt.Errorf("%w: more than %d namespace declarations", ErrXML, lim.Decls)
					}
					if n.Decl == nil {
						n.Decl = map[string]string{}
					}
					n.Decl[p] = a.Value
				}
			}
			ns, ok := n.Resolve(t.Name.Space)
			if !ok && t.Name.Space != "" {
				return nil, fmt.Errorf("%w: prefix %q of <%s> is not declared", ErrXML, t.Name.Space, t.Name.Local)
			}
			n.NS = ns
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				an := Attr{Name: a.Name.Local, Value: a.Value, Prefix: a.Name.Space}
				switch a.Name.Space {
				case "":
				case "xml":
					an.NS = xmlNS
				default:
					ans, ok := n.Resolve(a.Name.Space)
					if !ok {
						return nil, fmt.Errorf("%w: prefix %q of attribute %s is not declared", ErrXML, a.Name.Space, a.Name.Local)
					}
					an.NS = ans
				}
				if len(n.Attrs) == lim.Attrs {
					return nil, fmt.Errorf("%w: <%s> has more than %d attributes", ErrXML, t.Name.Local, lim.Attrs)
				}
				// Well-formedness: no attribute twice (XML 1.0 §3.1,
				// Namespaces in XML §6.3 for the expanded names).
				for _, o := range n.Attrs {
					if o.Name == an.Name && o.NS == an.NS {
						return nil, fmt.Errorf("%w: attribute %s appears twice on <%s>", ErrXML, an.Name, n.Name)
					}
				}
				n.Attrs = append(n.Attrs, an)
			}
			if n.Parent != nil {
				n.Parent.Children = append(n.Parent.Children, n)
			} else {
				root = n
			}
			stack = append(stack, n)
			texts = append(texts, nil)
		case xml.EndElement:
			// RawToken does not match end tags to start tags.
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: </%s> closes nothing", ErrXML, t.Name.Local)
			}
			n := stack[len(stack)-1]
			if t.Name.Local != n.Name || t.Name.Space != n.Prefix {
				return nil, fmt.Errorf("%w: </%s> closes <%s>", ErrXML, t.Name.Local, n.Name)
			}
			if tb := texts[len(texts)-1]; tb != nil {
				n.Text = tb.String()
			}
			stack, texts = stack[:len(stack)-1], texts[:len(texts)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return nil, fmt.Errorf("%w: text outside the root element", ErrXML)
				}
				continue
			}
			tb := texts[len(texts)-1]
			if tb == nil {
				tb = &strings.Builder{}
				texts[len(texts)-1] = tb
			}
			tb.Write(t)
		case xml.Directive:
			return nil, fmt.Errorf("%w: DTDs and directives are not accepted", ErrXML)
		case xml.ProcInst:
			if len(stack) > 0 || t.Target != "xml" {
				return nil, fmt.Errorf("%w: processing instruction %q", ErrXML, t.Target)
			}
		}
	}
}

// Resolve maps a prefix in x's scope to its namespace, walking up from x
// to the declaration nearest to it (depth is bounded by the parse).
func (x *XML) Resolve(prefix string) (string, bool) {
	if prefix == "xml" {
		return xmlNS, true
	}
	for e := x; e != nil; e = e.Parent {
		if ns, ok := e.Decl[prefix]; ok {
			return ns, true
		}
	}
	return "", false
}

// scope collects every prefix in scope at x with its namespace.
func (x *XML) scope() map[string]string {
	out := map[string]string{}
	for e := x; e != nil; e = e.Parent {
		for p, ns := range e.Decl {
			if _, ok := out[p]; !ok {
				out[p] = ns
			}
		}
	}
	return out
}

// HasElements reports whether x has element children.
func (x *XML) HasElements() bool { return len(x.Children) > 0 }

// Encode writes x and its subtree as XML, declaring the namespaces it
// uses on the way; as a document of its own (root), x declares every
// prefix in its scope, those of its ancestors too.
func (x *XML) Encode(b *strings.Builder, parentNS string, root bool) {
	b.WriteByte('<')
	b.WriteString(x.Name)
	if x.NS != parentNS {
		b.WriteString(` xmlns="`)
		xml.EscapeText(b, []byte(x.NS))
		b.WriteByte('"')
	}
	// An element declares what it declared when parsed; a document of
	// its own declares every prefix in scope.
	decl := x.Decl
	if root {
		decl = x.scope()
	}
	prefixes := make([]string, 0, len(decl))
	for p := range decl {
		if p != "" {
			prefixes = append(prefixes, p)
		}
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		fmt.Fprintf(b, ` xmlns:%s="`, p)
		xml.EscapeText(b, []byte(decl[p]))
		b.WriteByte('"')
	}
	for _, a := range x.Attrs {
		b.WriteByte(' ')
		p := a.Prefix
		if p == "" {
			p = x.prefixOf(a.NS)
		}
		if p != "" {
			b.WriteString(p + ":")
		}
		b.WriteString(a.Name + `="`)
		xml.EscapeText(b, []byte(a.Value))
		b.WriteByte('"')
	}
	b.WriteByte('>')
	xml.EscapeText(b, []byte(x.Text))
	for _, c := range x.Children {
		c.Encode(b, x.NS, false)
	}
	b.WriteString("</" + x.Name + ">")
}

// prefixOf finds a prefix bound to ns in x's scope ("" for none): xml
// for the XML namespace, else the nearest declaration still in effect.
func (x *XML) prefixOf(ns string) string {
	if ns == "" {
		return ""
	}
	if ns == xmlNS {
		return "xml"
	}
	for e := x; e != nil; e = e.Parent {
		for p, v := range e.Decl {
			if v == ns && p != "" {
				if got, _ := x.Resolve(p); got == ns {
					return p
				}
			}
		}
	}
	return ""
}
