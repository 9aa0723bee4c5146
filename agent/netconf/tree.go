package netconf

import (
	"encoding/xml"
	"io"
	"strings"
)

// Node is an element of a YANG data tree in its XML encoding (RFC 7950
// §7). The server builds the state it reports as a tree, so subtree
// filtering (RFC 6241 §6) and encoding work the same for every module.
type Node struct {
	Name     string
	NS       string // set on a module's top-level nodes; inherited below
	Text     string
	Attrs    []xml.Attr
	Children []*Node
}

// El makes an element with children.
func El(name string, children ...*Node) *Node { return &Node{Name: name, Children: children} }

// Leaf makes a leaf element.
func Leaf(name, text string) *Node { return &Node{Name: name, Text: text} }

// InNS sets the namespace of n.
func (n *Node) InNS(ns string) *Node { n.NS = ns; return n }

// Add appends children.
func (n *Node) Add(c ...*Node) *Node { n.Children = append(n.Children, c...); return n }

// Encode writes n as XML. Namespace declarations are emitted where a
// node's namespace differs from its parent's.
func (n *Node) Encode(w io.Writer) error {
	var b strings.Builder
	n.encode(&b, "")
	_, err := io.WriteString(w, b.String())
	return err
}

func (n *Node) String() string {
	var b strings.Builder
	n.encode(&b, "")
	return b.String()
}

func (n *Node) encode(b *strings.Builder, parentNS string) {
	b.WriteByte('<')
	b.WriteString(n.Name)
	if n.NS != "" && n.NS != parentNS {
		b.WriteString(` xmlns="`)
		xml.EscapeText(b2w{b}, []byte(n.NS))
		b.WriteByte('"')
	}
	for _, a := range n.Attrs {
		b.WriteByte(' ')
		if a.Name.Space != "" {
			b.WriteString(a.Name.Space)
			b.WriteByte(':')
		}
		b.WriteString(a.Name.Local)
		b.WriteString(`="`)
		xml.EscapeText(b2w{b}, []byte(a.Value))
		b.WriteByte('"')
	}
	ns := parentNS
	if n.NS != "" {
		ns = n.NS
	}
	if len(n.Children) == 0 && n.Text == "" {
		b.WriteString("/>")
		return
	}
	b.WriteByte('>')
	xml.EscapeText(b2w{b}, []byte(n.Text))
	for _, c := range n.Children {
		c.encode(b, ns)
	}
	b.WriteString("</")
	b.WriteString(n.Name)
	b.WriteByte('>')
}

type b2w struct{ b *strings.Builder }

func (w b2w) Write(p []byte) (int, error) { return w.b.Write(p) }

// filterNode is a parsed subtree-filter element.
type filterNode struct {
	Name     string
	NS       string
	Text     string
	Children []*filterNode
}

// Filter applies a subtree filter (RFC 6241 §6.2) to the top-level nodes
// and returns the selected copies. An empty filter selects nothing; a nil
// filter selects everything.
func Filter(data []*Node, f []*filterNode) []*Node {
	if f == nil {
		return data
	}
	var out []*Node
	for _, d := range data {
		for _, fn := range f {
			if m := match(d, fn, d.NS); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// match returns the part of n selected by f, or nil.
func match(n *Node, f *filterNode, ns string) *Node {
	if n.Name != f.Name || (f.NS != "" && ns != "" && f.NS != ns) {
		return nil
	}
	if len(f.Children) == 0 {
		// Content match node: text must equal; selection node: all.
		if strings.TrimSpace(f.Text) != "" && strings.TrimSpace(f.Text) != n.Text {
			return nil
		}
		return n
	}
	// Containment node: content-match children must all match, then
	// selection children pick what to return; with no selection
	// children, everything is returned.
	out := &Node{Name: n.Name, NS: n.NS, Text: n.Text, Attrs: n.Attrs}
	var selections []*filterNode
	for _, fc := range f.Children {
		if len(fc.Children) == 0 && strings.TrimSpace(fc.Text) != "" {
			ok := false
			for _, c := range n.Children {
				if c.Name == fc.Name && c.Text == strings.TrimSpace(fc.Text) {
					ok = true
					out.Children = append(out.Children, c)
				}
			}
			if !ok {
				return nil
			}
			continue
		}
		selections = append(selections, fc)
	}
	cns := ns
	if n.NS != "" {
		cns = n.NS
	}
	if len(selections) == 0 {
		if len(out.Children) == len(f.Children) {
			// Only content matches: return the whole entry.
			return n
		}
	}
	for _, c := range n.Children {
		for _, fc := range selections {
			if m := match(c, fc, cns); m != nil {
				out.Children = append(out.Children, m)
			}
		}
	}
	if len(selections) > 0 && len(out.Children) == 0 {
		return nil
	}
	return out
}

// parseFilter reads the children of a <filter type="subtree"> element;
// an empty filter gives an empty (not nil) list, which selects nothing.
func parseFilter(d *xml.Decoder, start xml.StartElement) ([]*filterNode, error) {
	n, err := parseFilterNode(d, start)
	if err != nil {
		return nil, err
	}
	if n.Children == nil {
		return []*filterNode{}, nil
	}
	return n.Children, nil
}

func parseFilterNode(d *xml.Decoder, start xml.StartElement) (*filterNode, error) {
	n := &filterNode{Name: start.Name.Local, NS: start.Name.Space}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			c, err := parseFilterNode(d, t)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, c)
		case xml.CharData:
			n.Text += string(t)
		case xml.EndElement:
			return n, nil
		}
	}
}
