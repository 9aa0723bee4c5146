package restconf

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// maxDepth bounds the nesting of a reply (the deepest RFC 9684 one is
// about 10), as the NETCONF client's XML scanner does.
const maxDepth = 64

// ToXML transcodes a YANG instance in RFC 7951 JSON into the XML the
// NETCONF client's decoders read: each member an element named by its
// local name, each array entry a repeated element, [null] (an empty
// leaf) an empty element. With output set, body is an operation's reply
// ({"module:output": {...}}) and the output's content is returned
// without its wrapper, as the inside of an rpc-reply; an empty body (204
// No Content) is an empty output.
func ToXML(body []byte, output bool) ([]byte, error) {
	var out bytes.Buffer
	if output && len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := expectDelim(d, '{'); err != nil {
		return nil, err
	}
	for d.More() {
		name, err := memberName(d)
		if err != nil {
			return nil, err
		}
		if output {
			if !strings.HasSuffix(name, ":output") {
				return nil, fmt.Errorf("restconf reply: %q where the operation's output belongs", name)
			}
			if err := expectDelim(d, '{'); err != nil {
				return nil, err
			}
			if err := members(d, &out, 1); err != nil {
				return nil, err
			}
			continue
		}
		if err := value(d, &out, local(name), 1); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, errors.New("restconf reply: data after the JSON value")
	}
	return out.Bytes(), nil
}

// members writes the members of an object whose '{' was read, up to and
// including its '}'.
func members(d *json.Decoder, out *bytes.Buffer, depth int) error {
	for d.More() {
		name, err := memberName(d)
		if err != nil {
			return err
		}
		if err := value(d, out, local(name), depth); err != nil {
			return err
		}
	}
	return expectDelim(d, '}')
}

// value writes the value of member name as element(s): an array is its
// entries, each an element.
func value(d *json.Decoder, out *bytes.Buffer, name string, depth int) error {
	tok, err := token(d, depth)
	if err != nil {
		return err
	}
	if tok == json.Delim('[') {
		for d.More() {
			// An array in an array is no YANG encoding ([null], an
			// empty leaf, is a null in an array).
			t, err := token(d, depth+1)
			if err != nil {
				return err
			}
			if err := element(d, out, name, t, depth+1); err != nil {
				return err
			}
		}
		return expectDelim(d, ']')
	}
	return element(d, out, name, tok, depth)
}

func token(d *json.Decoder, depth int) (json.Token, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("restconf reply: nesting deeper than %d", maxDepth)
	}
	tok, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("restconf reply: %w", err)
	}
	return tok, nil
}

// element writes the value that starts with tok as one element name: an
// object, or a scalar as its text, null as an empty element.
func element(d *json.Decoder, out *bytes.Buffer, name string, tok json.Token, depth int) error {
	switch t := tok.(type) {
	case json.Delim:
		if t != '{' {
			return fmt.Errorf("restconf reply: unexpected %q in %s", t, name)
		}
		out.WriteString("<" + name + ">")
		if err := members(d, out, depth+1); err != nil {
			return err
		}
		out.WriteString("</" + name + ">")
	case nil:
		out.WriteString("<" + name + "/>")
	case string:
		text(out, name, t)
	case json.Number:
		text(out, name, t.String())
	case bool:
		text(out, name, fmt.Sprint(t))
	}
	return nil
}

func text(out *bytes.Buffer, name, v string) {
	out.WriteString("<" + name + ">")
	xml.EscapeText(out, []byte(v))
	out.WriteString("</" + name + ">")
}

func memberName(d *json.Decoder) (string, error) {
	tok, err := d.Token()
	if err != nil {
		return "", fmt.Errorf("restconf reply: %w", err)
	}
	name, ok := tok.(string)
	if !ok || !validName(local(name)) {
		return "", fmt.Errorf("restconf reply: member name %v", tok)
	}
	return name, nil
}

// validName: a YANG identifier (RFC 7950 §6.2), so a name never breaks
// the XML it becomes.
func validName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func local(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func expectDelim(d *json.Decoder, want json.Delim) error {
	tok, err := d.Token()
	if err != nil {
		return fmt.Errorf("restconf reply: %w", err)
	}
	if tok != want {
		return fmt.Errorf("restconf reply: %v where %q belongs", tok, want)
	}
	return nil
}
