package netconf

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/schema"
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
		xml.EscapeText(b, []byte(n.NS))
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
		xml.EscapeText(b, []byte(a.Value))
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
	xml.EscapeText(b, []byte(n.Text))
	for _, c := range n.Children {
		c.encode(b, ns)
	}
	b.WriteString("</")
	b.WriteString(n.Name)
	b.WriteByte('>')
}

// escape writes s as XML character data.
func escape(b *strings.Builder, s string) { xml.EscapeText(b, []byte(s)) }

// filterNode is a parsed subtree-filter element.
type filterNode struct {
	Name     string
	NS       string // "" matches any namespace
	Text     string
	Children []*filterNode
}

// parseFilter converts a subtree filter (the <filter> or <subtree-filter>
// element, read and bounded with the message) into filter nodes; an empty
// filter gives an empty (not nil) list, which selects nothing. A filter
// node in the base namespace (the default of the <rpc> around it) has no
// namespace of its own and matches in any (RFC 6241 §6.2.2).
func parseFilter(x *schema.XML) ([]*filterNode, error) {
	count := 0
	var conv func(*schema.XML) (*filterNode, error)
	conv = func(e *schema.XML) (*filterNode, error) {
		if count++; count > maxFilterElements {
			return nil, &attester.RPCError{Type: "application", Tag: "invalid-value", Message: fmt.Sprintf("the subtree filter has more than %d elements", maxFilterElements)}
		}
		n := &filterNode{Name: e.Name, NS: e.NS, Text: e.Text}
		if n.NS == NSBase || n.NS == NSNMDA {
			n.NS = ""
		}
		for _, c := range e.Children {
			fc, err := conv(c)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, fc)
		}
		return n, nil
	}
	out := []*filterNode{}
	for _, c := range x.Children {
		fc, err := conv(c)
		if err != nil {
			return nil, err
		}
		out = append(out, fc)
	}
	return out, nil
}

// view is what a retrieval asks of the data beyond its filter.
type view struct {
	depth int // levels below each selected node (0: all)
	s     *schema.Set
}

// Filter applies a subtree filter (RFC 6241 §6.2) to the top-level nodes
// and returns the selected copies. An empty filter selects nothing; a nil
// filter selects everything.
func Filter(data []*Node, f []*filterNode) []*Node { return view{}.filter(data, f) }

func (v view) filter(data []*Node, f []*filterNode) []*Node {
	if f == nil {
		var out []*Node
		for _, d := range data {
			out = append(out, v.limit(d, v.top(d), v.depth))
		}
		return out
	}
	var out []*Node
	for _, d := range data {
		for _, fn := range f {
			if m := v.match(d, v.top(d), fn, d.NS); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

func (v view) top(d *Node) *schema.Node {
	if v.s == nil {
		return nil
	}
	return v.s.FindTop(d.NS, d.Name)
}

// child returns the schema node of data child c of a node with schema sn.
func child(sn *schema.Node, c *Node, ns string) *schema.Node {
	if sn == nil {
		return nil
	}
	if c.NS != "" {
		ns = c.NS
	}
	return sn.Child(ns, c.Name)
}

// limit copies n with depth levels (n itself is level 1), keeping the
// keys of list entries at any depth (RFC 8526 §3.1.1: the keys of the
// selected nodes' ancestors and of list entries are always included).
func (v view) limit(n *Node, sn *schema.Node, depth int) *Node {
	if depth <= 0 {
		return n
	}
	c := &Node{Name: n.Name, NS: n.NS, Text: n.Text, Attrs: n.Attrs}
	for _, ch := range n.Children {
		csn := child(sn, ch, n.NS)
		switch {
		case depth > 1:
			c.Children = append(c.Children, v.limit(ch, csn, depth-1))
		case csn != nil && csn.IsKey():
			c.Children = append(c.Children, ch)
		}
	}
	return c
}

// match returns the part of n selected by f, or nil.
func (v view) match(n *Node, sn *schema.Node, f *filterNode, ns string) *Node {
	if n.Name != f.Name || (f.NS != "" && ns != "" && f.NS != ns) {
		return nil
	}
	if len(f.Children) == 0 {
		// Content match node: text must equal; selection node: all.
		if strings.TrimSpace(f.Text) != "" && strings.TrimSpace(f.Text) != n.Text {
			return nil
		}
		return v.limit(n, sn, v.depth)
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
			return v.limit(n, sn, v.depth)
		}
	}
	for _, c := range n.Children {
		for _, fc := range selections {
			if m := v.match(c, child(sn, c, cns), fc, cns); m != nil {
				out.Children = append(out.Children, m)
			}
		}
	}
	if len(selections) > 0 && len(out.Children) == 0 {
		return nil
	}
	return out
}
