package netconf

import (
	"encoding/xml"

	"github.com/openriv/riv/pkg/schema"
)

// NSWithDefaults is the namespace of the with-defaults "default"
// attribute (RFC 6243 §6).
const NSWithDefaults = "urn:ietf:params:xml:ns:netconf:default:1.0"

// present filters tree and renders it as the retrieval asks: the subtree
// filter f, depth levels below each selected node (0: all; RFC 8526
// §3.1.1), and the with-defaults mode (RFC 6243 §3): report-all and
// explicit report every leaf the server has (state is never "set by a
// client"), trim leaves out whose value is their schema default, and
// report-all-tagged marks those with wd:default="true".
func (s *Server) present(tree []*Node, f []*filterNode, depth int, mode string) []*Node {
	out := view{depth: depth, s: s.schema}.filter(tree, f)
	if mode != "trim" && mode != "report-all-tagged" {
		return out
	}
	var walk func(n *Node, sn *schema.Node) *Node
	walk = func(n *Node, sn *schema.Node) *Node {
		if sn != nil && sn.Kind == schema.Leaf && len(sn.Default) > 0 && isDefault(s.schema, sn, n.Text, n) {
			if mode == "trim" {
				return nil
			}
			c := *n
			c.Attrs = append(append([]xml.Attr(nil), n.Attrs...), xmlns("wd", NSWithDefaults), xml.Attr{Name: xml.Name{Space: "wd", Local: "default"}, Value: "true"})
			return &c
		}
		if len(n.Children) == 0 {
			return n
		}
		c := &Node{Name: n.Name, NS: n.NS, Text: n.Text, Attrs: n.Attrs}
		for _, ch := range n.Children {
			if m := walk(ch, child(sn, ch, nsOf(n, sn))); m != nil {
				c.Children = append(c.Children, m)
			}
		}
		return c
	}
	for i, n := range out {
		out[i] = walk(n, s.schema.FindTop(n.NS, n.Name))
	}
	return out
}

func nsOf(n *Node, sn *schema.Node) string {
	if n.NS != "" {
		return n.NS
	}
	if sn != nil {
		return sn.Module.Namespace
	}
	return ""
}

// isDefault reports whether a leaf's value is its schema default.
func isDefault(set *schema.Set, sn *schema.Node, text string, n *Node) bool {
	resolve := func(p string) (string, bool) {
		for _, a := range n.Attrs {
			if a.Name.Space == "xmlns" && a.Name.Local == p {
				return a.Value, true
			}
		}
		return sn.Module.Namespace, p == ""
	}
	v, err := sn.Type.Check(set, text, resolve)
	if err != nil {
		return false
	}
	d, err := sn.Type.Check(set, sn.Default[0], func(p string) (string, bool) {
		if m := set.Module(sn.Module.Name); m != nil && p == m.Prefix {
			return m.Namespace, true
		}
		return "", false
	})
	return err == nil && v == d
}

// configOnly keeps the config true nodes of the tree (the running
// datastore's view of the state).
func (s *Server) configOnly(tree []*Node) []*Node { return s.configFilter(tree, true) }

// configFilter keeps the nodes whose config property is want, with their
// ancestors and the keys of the list entries on the way (RFC 8526
// §3.1.1, config-filter).
func (s *Server) configFilter(tree []*Node, want bool) []*Node {
	var walk func(n *Node, sn *schema.Node) *Node
	walk = func(n *Node, sn *schema.Node) *Node {
		if sn == nil {
			return nil
		}
		if len(n.Children) == 0 {
			if sn.Config == want {
				return n
			}
			return nil
		}
		c := &Node{Name: n.Name, NS: n.NS, Text: n.Text, Attrs: n.Attrs}
		var keys []*Node
		for _, ch := range n.Children {
			csn := child(sn, ch, nsOf(n, sn))
			if csn != nil && csn.IsKey() {
				keys = append(keys, ch)
				if csn.Config == want {
					c.Children = append(c.Children, ch)
				}
				continue
			}
			if m := walk(ch, csn); m != nil {
				c.Children = append(c.Children, m)
			}
		}
		if len(c.Children) == 0 {
			if sn.Config == want && (sn.Kind == schema.Container || sn.Kind == schema.List) && len(keys) == 0 {
				return c // an empty container or keyless entry of the wanted kind
			}
			return nil
		}
		if sn.Kind == schema.List && !want {
			// A state subtree of a configured list entry names the entry.
			c.Children = append(append([]*Node(nil), keys...), nonKeys(c.Children, keys)...)
		}
		return c
	}
	var out []*Node
	for _, n := range tree {
		if m := walk(n, s.schema.FindTop(n.NS, n.Name)); m != nil {
			out = append(out, m)
		}
	}
	return out
}

func nonKeys(children, keys []*Node) []*Node {
	var out []*Node
	for _, c := range children {
		key := false
		for _, k := range keys {
			key = key || c == k
		}
		if !key {
			out = append(out, c)
		}
	}
	return out
}
