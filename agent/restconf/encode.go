package restconf

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// xnode is an element of a reply in its XML encoding, with the
// namespace of an identityref value resolved.
type xnode struct {
	ns, name string
	text     string
	textNS   string // namespace bound to the text's prefix, if any
	children []*xnode
	attrs    []xml.Attr // namespace declarations, kept for XML output
}

const maxDepth = 64

// parseXML reads one element and its subtree. The input is the NETCONF
// server's own reply, but it is still read with bounds.
func parseXML(b []byte) (*xnode, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var stack []*xnode
	var scopes []map[string]string
	var root *xnode
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			if root == nil || len(stack) > 0 {
				return nil, errors.New("truncated XML")
			}
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, errors.New("XML nested too deep")
			}
			scope := map[string]string{}
			if len(scopes) > 0 {
				for k, v := range scopes[len(scopes)-1] {
					scope[k] = v
				}
			}
			n := &xnode{name: t.Name.Local}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					scope[""] = a.Value
				case a.Name.Space == "xmlns":
					scope[a.Name.Local] = a.Value
					n.attrs = append(n.attrs, a)
				}
			}
			ns, ok := scope[t.Name.Space]
			if !ok {
				return nil, fmt.Errorf("undeclared prefix %q", t.Name.Space)
			}
			n.ns = ns
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			} else if root != nil {
				return nil, errors.New("more than one root element")
			} else {
				root = n
			}
			stack = append(stack, n)
			scopes = append(scopes, scope)
		case xml.EndElement:
			n := stack[len(stack)-1]
			n.text = strings.TrimSpace(n.text)
			if i := strings.IndexByte(n.text, ':'); i > 0 && len(n.children) == 0 {
				n.textNS = scopes[len(scopes)-1][n.text[:i]]
			}
			stack, scopes = stack[:len(stack)-1], scopes[:len(scopes)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
}

// writeJSONMembers writes the children of parent as the members of a
// JSON object (without braces), grouping lists and leaf-lists into
// arrays in the order they first appear.
func writeJSONMembers(b *bytes.Buffer, parent string, parentNS string, children []*xnode) error {
	type group struct {
		name  string
		nodes []*xnode
	}
	var groups []*group
	byName := map[string]*group{}
	for _, c := range children {
		key := c.ns + " " + c.name
		g := byName[key]
		if g == nil {
			g = &group{name: c.name}
			byName[key] = g
			groups = append(groups, g)
		}
		g.nodes = append(g.nodes, c)
	}
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		first := g.nodes[0]
		name := first.name
		if first.ns != parentNS {
			mod, ok := modules[first.ns]
			if !ok {
				return fmt.Errorf("namespace %q is not a served module", first.ns)
			}
			name = mod + ":" + name
		}
		writeString(b, name)
		b.WriteByte(':')
		sn := lookup(parent, first.name)
		switch {
		case sn.kind == list || sn.kind == leafList:
			b.WriteByte('[')
			for k, n := range g.nodes {
				if k > 0 {
					b.WriteByte(',')
				}
				if err := writeJSONValue(b, n, sn); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case len(g.nodes) > 1:
			return fmt.Errorf("%s appears %d times but is not a list", first.name, len(g.nodes))
		default:
			if err := writeJSONValue(b, first, sn); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeJSONValue(b *bytes.Buffer, n *xnode, sn schemaNode) error {
	if len(n.children) > 0 || (sn.kind == list) {
		b.WriteByte('{')
		if err := writeJSONMembers(b, n.name, n.ns, n.children); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	}
	switch sn.typ {
	case vNumber:
		for _, c := range n.text {
			if (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("%s: %q is not a number", n.name, n.text)
			}
		}
		if n.text == "" {
			return fmt.Errorf("%s: empty number", n.name)
		}
		b.WriteString(n.text)
	case vBool:
		if n.text != "true" && n.text != "false" {
			return fmt.Errorf("%s: %q is not a boolean", n.name, n.text)
		}
		b.WriteString(n.text)
	case vEmpty:
		b.WriteString("[null]")
	case vIdentity:
		v := n.text
		ns := n.ns
		if i := strings.IndexByte(v, ':'); i >= 0 {
			v, ns = v[i+1:], n.textNS
		}
		mod, ok := modules[ns]
		if !ok {
			return fmt.Errorf("%s: identity %q of an unknown module", n.name, n.text)
		}
		writeString(b, mod+":"+v)
	default:
		if len(n.children) == 0 && n.text == "" && sn.kind == single && isContainerName(n.name) {
			b.WriteString("{}")
			return nil
		}
		writeString(b, n.text)
	}
	return nil
}

// isContainerName names the containers the agent may send empty.
func isContainerName(name string) bool {
	switch name {
	case "certificates", "tpms", "attester-supported-algos", "asymmetric-keys", "system-event-logs", "log-result",
		"bios-event-logs", "ima-event-logs", "boot-event-logs", "tpm20-attestation-challenge", "data", "output", "input":
		return true
	}
	return false
}

func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// writeXML writes n with its namespace declared where it differs from
// parentNS.
func writeXML(b *bytes.Buffer, n *xnode, parentNS string) {
	b.WriteByte('<')
	b.WriteString(n.name)
	if n.ns != parentNS {
		b.WriteString(` xmlns="`)
		xml.EscapeText(b, []byte(n.ns))
		b.WriteByte('"')
	}
	for _, a := range n.attrs {
		b.WriteString(" xmlns:" + a.Name.Local + `="`)
		xml.EscapeText(b, []byte(a.Value))
		b.WriteByte('"')
	}
	if len(n.children) == 0 && n.text == "" {
		b.WriteString("/>")
		return
	}
	b.WriteByte('>')
	xml.EscapeText(b, []byte(n.text))
	for _, c := range n.children {
		writeXML(b, c, n.ns)
	}
	b.WriteString("</" + n.name + ">")
}
