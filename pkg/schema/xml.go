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
	// Scope maps the prefixes in scope to namespaces ("" the default).
	Scope map[string]string
}

// Attr is an attribute with its namespace resolved ("" for none).
type Attr struct {
	Name, NS, Value string
}

// Limits bound what ParseXML accepts from an untrusted peer.
type Limits struct {
	Depth    int // element nesting (default 64)
	Elements int // elements in the document (default 1<<20)
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
			var parentScope map[string]string
			if len(stack) > 0 {
				parentScope = stack[len(stack)-1].Scope
			}
			// Maps are shared down the tree until a declaration changes them.
			scope, copied := parentScope, false
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					if !copied {
						scope, copied = copyScope(parentScope), true
					}
					p := a.Name.Local
					if a.Name.Space == "" {
						p = ""
					}
					if p == "xml" || p == "xmlns" {
						return nil, fmt.Errorf("%w: prefix %q cannot be declared", ErrXML, p)
					}
					scope[p] = a.Value
				}
			}
			if scope == nil {
				scope = map[string]string{}
			}
			n := &XML{Name: t.Name.Local, Prefix: t.Name.Space, Scope: scope}
			ns, ok := scope[t.Name.Space]
			if !ok && t.Name.Space != "" {
				return nil, fmt.Errorf("%w: prefix %q of <%s> is not declared", ErrXML, t.Name.Space, t.Name.Local)
			}
			n.NS = ns
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				an := Attr{Name: a.Name.Local, Value: a.Value}
				switch a.Name.Space {
				case "":
				case "xml":
					an.NS = "http://www.w3.org/XML/1998/namespace"
				default:
					ans, ok := scope[a.Name.Space]
					if !ok {
						return nil, fmt.Errorf("%w: prefix %q of attribute %s is not declared", ErrXML, a.Name.Space, a.Name.Local)
					}
					an.NS = ans
				}
				n.Attrs = append(n.Attrs, an)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				n.Parent = p
				p.Children = append(p.Children, n)
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

func copyScope(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Resolve maps a prefix in x's scope to its namespace.
func (x *XML) Resolve(prefix string) (string, bool) {
	ns, ok := x.Scope[prefix]
	return ns, ok
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
		xml.EscapeText(b2w{b}, []byte(x.NS))
		b.WriteByte('"')
	}
	prefixes := make([]string, 0, len(x.Scope))
	for p := range x.Scope {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		ns := x.Scope[p]
		if p != "" && (root || x.Parent == nil || x.Parent.Scope[p] != ns) {
			fmt.Fprintf(b, ` xmlns:%s="`, p)
			xml.EscapeText(b2w{b}, []byte(ns))
			b.WriteByte('"')
		}
	}
	for _, a := range x.Attrs {
		b.WriteByte(' ')
		if a.NS != "" {
			for p, ns := range x.Scope {
				if ns == a.NS && p != "" {
					b.WriteString(p + ":")
					break
				}
			}
		}
		b.WriteString(a.Name + `="`)
		xml.EscapeText(b2w{b}, []byte(a.Value))
		b.WriteByte('"')
	}
	b.WriteByte('>')
	xml.EscapeText(b2w{b}, []byte(x.Text))
	for _, c := range x.Children {
		c.Encode(b, x.NS, false)
	}
	b.WriteString("</" + x.Name + ">")
}

type b2w struct{ b *strings.Builder }

func (w b2w) Write(p []byte) (int, error) { return w.b.Write(p) }
