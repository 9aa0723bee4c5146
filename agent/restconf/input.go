package restconf

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// inputXML turns an RPC's input, as a client sent it, into the XML
// content of the NETCONF operation element (its children, plus the
// namespace declarations they need). An empty body is an empty input.
func inputXML(body []byte, isJSON bool, module string) (children string, decls []xml.Attr, err error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil, nil
	}
	if isJSON {
		return jsonInput(body, module)
	}
	return xmlInput(body)
}

// jsonInput converts {"module:input": {...}} (RFC 8040 §3.6.1, RFC 7951).
func jsonInput(body []byte, module string) (string, []xml.Attr, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var top map[string]any
	if err := d.Decode(&top); err != nil {
		return "", nil, fmt.Errorf("input is not a JSON object: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return "", nil, errors.New("content after the input object")
	}
	if len(top) != 1 {
		return "", nil, fmt.Errorf("want one member %q, got %d", module+":input", len(top))
	}
	in, ok := top[module+":input"]
	if !ok {
		return "", nil, fmt.Errorf("want member %q", module+":input")
	}
	obj, ok := in.(map[string]any)
	if !ok {
		return "", nil, errors.New("input is not an object")
	}
	var b strings.Builder
	prefixes := map[string]string{} // namespace -> prefix declared on the operation
	if err := jsonMembers(&b, "input", module, obj, prefixes, 0); err != nil {
		return "", nil, err
	}
	var decls []xml.Attr
	for ns, p := range prefixes {
		decls = append(decls, xml.Attr{Name: xml.Name{Space: "xmlns", Local: p}, Value: ns})
	}
	slices.SortFunc(decls, func(a, b xml.Attr) int { return strings.Compare(a.Name.Local, b.Name.Local) })
	return b.String(), decls, nil
}

func jsonMembers(b *strings.Builder, parent, module string, obj map[string]any, prefixes map[string]string, depth int) error {
	if depth > maxDepth {
		return errors.New("input nested too deep")
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		mod, name := module, k
		if i := strings.IndexByte(k, ':'); i >= 0 {
			mod, name = k[:i], k[i+1:]
		}
		ns, ok := namespaces[mod]
		if !ok {
			return fmt.Errorf("%s: unknown module %q", k, mod)
		}
		if !validName(name) {
			return fmt.Errorf("%q is not a YANG identifier", name)
		}
		sn := lookup(parent, name)
		values := []any{obj[k]}
		if arr, ok := obj[k].([]any); ok && sn.typ != vEmpty {
			if sn.kind == single {
				return fmt.Errorf("%s is not a list or leaf-list", name)
			}
			values = arr
		} else if sn.kind != single {
			return fmt.Errorf("%s must be an array", name)
		}
		for _, v := range values {
			open := "<" + name
			if mod != module {
				open += ` xmlns="` + escape(ns) + `"`
			}
			switch x := v.(type) {
			case map[string]any:
				b.WriteString(open + ">")
				if err := jsonMembers(b, name, mod, x, prefixes, depth+1); err != nil {
					return err
				}
				b.WriteString("</" + name + ">")
			case []any: // [null] for type empty
				if sn.typ != vEmpty || len(x) != 1 || x[0] != nil {
					return fmt.Errorf("%s: unexpected array", name)
				}
				b.WriteString(open + "/>")
			case string:
				if sn.typ == vIdentity {
					i := strings.IndexByte(x, ':')
					if i < 0 {
						return fmt.Errorf("%s: identity %q has no module", name, x)
					}
					ins, ok := namespaces[x[:i]]
					if !ok {
						return fmt.Errorf("%s: identity %q of an unknown module", name, x)
					}
					p := prefixes[ins]
					if p == "" {
						p = fmt.Sprintf("m%d", len(prefixes))
						prefixes[ins] = p
					}
					x = p + ":" + x[i+1:]
				}
				b.WriteString(open + ">" + escape(x) + "</" + name + ">")
			case json.Number:
				b.WriteString(open + ">" + escape(x.String()) + "</" + name + ">")
			case bool:
				fmt.Fprintf(b, "%s>%t</%s>", open, x, name)
			default:
				return fmt.Errorf("%s: unexpected value %v", name, v)
			}
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c == '-' || c == '.' || c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// xmlInput takes <input xmlns="...">...</input> apart: its children's
// markup as sent, and its namespace declarations.
func xmlInput(body []byte) (string, []xml.Attr, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	var root xml.StartElement
	depth := 0
	start, end := -1, -1
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("input is not XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if start >= 0 {
					return "", nil, errors.New("more than one root element")
				}
				root = t
				start = int(d.InputOffset())
			}
			depth++
			if depth > maxDepth {
				return "", nil, errors.New("input nested too deep")
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				end = int(off)
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return "", nil, errors.New("text outside the input element")
			}
		}
	}
	if start < 0 || end < start || depth != 0 {
		return "", nil, errors.New("input is not one XML element")
	}
	if root.Name.Local != "input" {
		return "", nil, fmt.Errorf("root element is <%s>, want <input>", root.Name.Local)
	}
	var decls []xml.Attr
	for _, a := range root.Attr {
		if a.Name.Space == "xmlns" {
			decls = append(decls, a)
		} else if a.Name.Space == "" && a.Name.Local == "xmlns" {
			if _, ok := modules[a.Value]; !ok {
				return "", nil, fmt.Errorf("input namespace %q is not a served module", a.Value)
			}
		}
	}
	return string(body[start:end]), decls, nil
}
