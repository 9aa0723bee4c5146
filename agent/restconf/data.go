package restconf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/pkg/schema"
)

// step is one resolved step of a data resource identifier.
type step struct {
	sn   *schema.Node
	keys []string // list key values, in key order, as the URI gives them
}

const maxSegments = 32

// resolve parses an RFC 8040 §3.5.3 api-path after /restconf/data/ and
// resolves it in the schema: the first step names its module, a list
// entry gives every key, a leaf-list cannot be addressed alone. The last
// step may name a list without keys: the resource is then every entry of
// the list (component=TAGID/rim, the RIMs of one component), which RFC
// 8040 leaves undefined and servers commonly answer with the list.
func (s *Server) resolve(raw string) ([]step, error) {
	if raw == "" {
		return nil, nil
	}
	parts := strings.Split(raw, "/")
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("path deeper than %d", maxSegments)
	}
	var out []step
	var cur *schema.Node
	var mod *schema.Module
	for i, p := range parts {
		id, keys, hasKeys := strings.Cut(p, "=")
		id, err := url.PathUnescape(id)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i+1, err)
		}
		name := id
		if m, n, ok := strings.Cut(id, ":"); ok {
			if mod = s.schema.Module(m); mod == nil || !mod.Implemented {
				return nil, fmt.Errorf("unknown module %q", m)
			}
			name = n
		} else if i == 0 {
			return nil, fmt.Errorf("the first segment %q must name its module", id)
		}
		var sn *schema.Node
		if cur == nil {
			sn = s.schema.FindTop(mod.Namespace, name)
		} else {
			sn = cur.Child(mod.Namespace, name)
		}
		if sn == nil {
			return nil, fmt.Errorf("%s is not a data node here", id)
		}
		st := step{sn: sn}
		if hasKeys {
			for _, k := range strings.Split(keys, ",") {
				v, err := url.PathUnescape(k)
				if err != nil {
					return nil, fmt.Errorf("key of %s: %w", name, err)
				}
				st.keys = append(st.keys, v)
			}
		}
		switch {
		case sn.Kind == schema.List && !hasKeys && i == len(parts)-1:
		case sn.Kind == schema.List && len(sn.Keys) == 0:
			return nil, fmt.Errorf("list %s has no key and cannot be addressed", name)
		case sn.Kind == schema.List && len(st.keys) != len(sn.Keys):
			return nil, fmt.Errorf("list %s needs its keys %s (%s=VALUE)", name, strings.Join(sn.Keys, ","), name)
		case sn.Kind != schema.List && hasKeys:
			return nil, fmt.Errorf("%s is not a list", name)
		case sn.Kind == schema.LeafList:
			return nil, fmt.Errorf("leaf-list %s cannot be addressed alone", name)
		}
		out = append(out, st)
		cur, mod = sn, sn.Module
	}
	return out, nil
}

// data answers GET /restconf/data[/path].
func (q *request) data(rawPath string) {
	p, ok := q.params("content", "depth", "fields", "with-defaults")
	if !ok {
		return
	}
	bad := func(format string, a ...any) {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf(format, a...)})
	}
	steps, err := q.s.resolve(rawPath)
	if err != nil {
		bad("%v", err)
		return
	}
	content := p["content"]
	switch content {
	case "", "all", "config", "nonconfig":
	default:
		bad("content %q: want all, config or nonconfig", content)
		return
	}
	depth := 0
	if v, ok := p["depth"]; ok && v != "unbounded" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			bad("depth %q: want 1..65535 or unbounded", v)
			return
		}
		depth = n
	}
	wd := p["with-defaults"]
	switch wd {
	case "", "report-all", "trim", "explicit", "report-all-tagged":
	default:
		bad("with-defaults %q: want report-all, trim, explicit or report-all-tagged", wd)
		return
	}
	var fields []*field
	if v, ok := p["fields"]; ok {
		var target *schema.Node
		if len(steps) > 0 {
			target = steps[len(steps)-1].sn
		}
		if fields, err = parseFields(v, q.s.schema, target); err != nil {
			bad("fields %q: %v", v, err)
			return
		}
	}
	whole := len(steps) > 0 && wholeList(steps[len(steps)-1])
	if whole && !q.json {
		// Several entries are several XML documents; JSON has the array.
		q.fail(&rcError{status: http.StatusNotAcceptable, Type: "protocol", Tag: "invalid-value",
			Message: "every entry of a list has no XML representation: ask for application/yang-data+json, or name one entry"})
		return
	}
	// The NETCONF retrieval the request stands for: the whole datastore,
	// or the path as a subtree filter.
	filter := pathFilter(steps)
	wdParam := ""
	if wd != "" {
		wdParam = `<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">` + wd + `</with-defaults>`
	}
	sub, nc := "", ""
	if filter != "" {
		sub, nc = `<subtree-filter>`+filter+`</subtree-filter>`, `<filter type="subtree">`+filter+`</filter>`
	}
	var op string
	switch content {
	case "config":
		op = `<get-data xmlns="` + netconf.NSNMDA + `" xmlns:ds="` + netconf.NSDatastores + `"><datastore>ds:running</datastore>` + sub + wdParam + `</get-data>`
	case "nonconfig":
		op = `<get-data xmlns="` + netconf.NSNMDA + `" xmlns:ds="` + netconf.NSDatastores + `"><datastore>ds:operational</datastore>` + sub + `<config-filter>false</config-filter>` + wdParam + `</get-data>`
	default:
		op = `<get>` + nc + wdParam + `</get>`
	}
	root, rerr := q.exchange(op)
	if rerr != nil {
		q.fail(rerr)
		return
	}
	var data *schema.XML
	for _, c := range root.Children {
		if c.Name == "data" {
			data = c
		}
	}
	if data == nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: reply without data"})
		return
	}
	var b bytes.Buffer
	if len(steps) == 0 {
		tops := data.Children
		if depth > 0 || fields != nil {
			var cut []*schema.XML
			for _, t := range tops {
				sub, ok := pick(fields, t.Name)
				if !ok {
					continue
				}
				cut = append(cut, q.s.view(t, q.s.schema.FindTop(t.NS, t.Name), depth, sub))
			}
			tops = cut
		}
		if q.json {
			b.WriteString(`{"ietf-restconf:data":{`)
			err = q.s.schema.WriteJSON(&b, nil, tops, nil)
			b.WriteString("}}")
		} else {
			var sb strings.Builder
			sb.WriteString(`<data xmlns="` + nsRestconf + `">`)
			for _, c := range tops {
				c.Encode(&sb, nsRestconf, true)
			}
			sb.WriteString("</data>")
			b.WriteString(sb.String())
		}
	} else {
		targets := q.s.find(data, steps)
		if len(targets) == 0 {
			q.fail(&rcError{status: http.StatusNotFound, Type: "protocol", Tag: "invalid-value", Message: "no data at " + rawPath})
			return
		}
		sn := steps[len(steps)-1].sn
		for i, t := range targets {
			targets[i] = q.s.view(t, sn, depth, fields)
		}
		if q.json {
			var parent *schema.Node
			if len(steps) > 1 {
				parent = steps[len(steps)-2].sn
			}
			b.WriteByte('{')
			// The target is named with its module (RFC 8040 §3.5.3); a
			// list's entries are one array.
			err = q.s.schema.WriteJSON(&b, parent, targets, nil)
			b.WriteByte('}')
		} else {
			var sb strings.Builder
			targets[0].Encode(&sb, "", true)
			b.WriteString(sb.String())
		}
	}
	if err != nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: " + err.Error()})
		return
	}
	// RFC 8040 §3.4.1: the entity tag of this representation, and when
	// the data last changed: the start, or a reload of the software
	// inventory. A client that has it gets 304. Last-Modified has whole
	// seconds, too coarse for a reload within the second a client last
	// fetched: the entity tag is the validator to rely on.
	modified := q.s.started
	if m := q.s.cfg.NETCONF.Modified().UTC().Truncate(time.Second); m.After(modified) {
		modified = m
	}
	tag := etag(b.Bytes())
	q.w.Header().Set("ETag", tag)
	q.w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
	if inm := q.r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			if t = strings.TrimSpace(t); t == tag || t == "*" {
				q.w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	} else if ims := q.r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !modified.After(t) {
			q.w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	q.send(http.StatusOK, b.String())
}

// wholeList reports whether the step names every entry of a list.
func wholeList(st step) bool { return st.sn.Kind == schema.List && st.keys == nil }

// find walks the retrieved data along the path, choosing list entries by
// their keys compared as values of the key's type (an identity key
// matches whatever prefix names it). It returns the target, or every
// entry of a list the last step names without keys; none when there is
// no data there.
func (s *Server) find(data *schema.XML, steps []step) []*schema.XML {
	cur := data
	for i, st := range steps {
		var next []*schema.XML
		for _, c := range cur.Children {
			if c.Name != st.sn.Name || c.NS != st.sn.Module.Namespace {
				continue
			}
			if st.sn.Kind == schema.List && !wholeList(st) && !s.keysMatch(c, st) {
				continue
			}
			next = append(next, c)
			if !wholeList(st) {
				break
			}
		}
		if len(next) == 0 {
			return nil
		}
		if i == len(steps)-1 {
			return next
		}
		cur = next[0]
	}
	return nil
}

// pathFilter is the subtree filter (RFC 6241 §6) of the data a path
// addresses, "" for the whole datastore. It follows the path down as far
// as a filter can say the same: through containers, and through list
// entries whose keys are strings, matched by content; a list keyed
// otherwise (an identity, whose text depends on its prefix; a number,
// with more than one way to write it) ends it, and find picks the entry
// by typed comparison. So fetching one component's RIMs renders that
// component alone, not the whole inventory.
func pathFilter(steps []step) string {
	var b, closing strings.Builder
	var tails []string
	ns := ""
	for _, st := range steps {
		b.WriteString("<" + st.sn.Name)
		if st.sn.Module.Namespace != ns {
			ns = st.sn.Module.Namespace
			b.WriteString(` xmlns="`)
			xml.EscapeText(&b, []byte(ns))
			b.WriteByte('"')
		}
		deeper := st.sn.Kind == schema.Container
		if st.sn.Kind == schema.List && !wholeList(st) && stringKeys(st) {
			b.WriteByte('>')
			for i, k := range st.sn.Keys {
				b.WriteString("<" + k + ">")
				xml.EscapeText(&b, []byte(st.keys[i]))
				b.WriteString("</" + k + ">")
			}
			deeper = true
		} else if deeper {
			b.WriteByte('>')
		}
		if !deeper {
			b.WriteString("/>")
			break
		}
		tails = append(tails, "</"+st.sn.Name+">")
	}
	for i := len(tails) - 1; i >= 0; i-- {
		closing.WriteString(tails[i])
	}
	return b.String() + closing.String()
}

// stringKeys reports whether every key of the list step is a string
// whose value a content match compares exactly (it trims white space).
func stringKeys(st step) bool {
	for i, k := range st.sn.Keys {
		kn := st.sn.Child("", k)
		if kn == nil || kn.Type == nil || kn.Type.Kind != "string" || strings.TrimSpace(st.keys[i]) != st.keys[i] || st.keys[i] == "" {
			return false
		}
	}
	return true
}

func (s *Server) keysMatch(entry *schema.XML, st step) bool {
	for i, k := range st.sn.Keys {
		kn := st.sn.Child("", k)
		if kn == nil || kn.Type == nil {
			return false
		}
		var got *schema.XML
		for _, c := range entry.Children {
			if c.Name == k {
				got = c
			}
		}
		if got == nil {
			return false
		}
		have, err := kn.Type.Check(s.schema, got.Text, got.Resolve)
		if err != nil {
			return false
		}
		// The URI gives an identity as module:name (RFC 8040 §3.5.3,
		// the JSON form); other values in their YANG text form.
		want, err := kn.Type.Check(s.schema, st.keys[i], func(p string) (string, bool) {
			if m := s.schema.Module(p); m != nil {
				return m.Namespace, true
			}
			return "", false
		})
		if err != nil || have != want {
			return false
		}
	}
	return true
}

// field is one node of a parsed fields expression.
type field struct {
	name     string
	children []*field
}

// parseFields parses RFC 8040 §4.8.3's fields expression (paths separated
// by ";", a path followed by "(...)" selecting below it), checking every
// name against the schema below target (the data root when nil).
func parseFields(expr string, set *schema.Set, target *schema.Node) ([]*field, error) {
	p := &fieldParser{s: expr}
	out, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
	}
	var check func(fs []*field, parent *schema.Node) error
	check = func(fs []*field, parent *schema.Node) error {
		for _, f := range fs {
			name := f.name
			ns := ""
			if m, n, ok := strings.Cut(name, ":"); ok {
				mod := set.Module(m)
				if mod == nil {
					return fmt.Errorf("unknown module %q", m)
				}
				ns, name, f.name = mod.Namespace, n, n
			}
			var sn *schema.Node
			if parent == nil {
				if ns == "" {
					return fmt.Errorf("%q at the data root must name its module", name)
				}
				sn = set.FindTop(ns, name)
			} else {
				sn = parent.Child(ns, name)
			}
			if sn == nil {
				return fmt.Errorf("%s is not a data node here", name)
			}
			if err := check(f.children, sn); err != nil {
				return err
			}
		}
		return nil
	}
	return out, check(out, target)
}

type fieldParser struct {
	s string
	i int
}

func (p *fieldParser) expr() ([]*field, error) {
	var out []*field
	for {
		f, err := p.path()
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		if p.i < len(p.s) && p.s[p.i] == ';' {
			p.i++
			continue
		}
		return out, nil
	}
}

func (p *fieldParser) path() (*field, error) {
	var head, tail *field
	for {
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune("/;()", rune(p.s[p.i])) {
			p.i++
		}
		if p.i == start {
			return nil, fmt.Errorf("a name is missing at %d", start)
		}
		f := &field{name: p.s[start:p.i]}
		if head == nil {
			head = f
		} else {
			tail.children = []*field{f}
		}
		tail = f
		if p.i < len(p.s) && p.s[p.i] == '/' {
			p.i++
			continue
		}
		break
	}
	if p.i < len(p.s) && p.s[p.i] == '(' {
		p.i++
		sub, err := p.expr()
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return nil, errors.New("missing )")
		}
		p.i++
		tail.children = sub
	}
	return head, nil
}

// view copies the target with depth levels (the target is level 1; 0
// means all) and, with fields, only the selected descendants and their
// ancestors; list keys are always kept.
func (s *Server) view(x *schema.XML, sn *schema.Node, depth int, fields []*field) *schema.XML {
	c := *x
	c.Children = nil
	for _, ch := range x.Children {
		var csn *schema.Node
		if sn != nil {
			csn = sn.Child(ch.NS, ch.Name)
		}
		key := csn != nil && csn.IsKey()
		var sub []*field
		if !key {
			var ok bool
			if sub, ok = pick(fields, ch.Name); !ok {
				continue
			}
		}
		if depth == 1 && !key {
			continue
		}
		d := depth
		if d > 0 {
			d--
		}
		cc := s.view(ch, csn, d, sub)
		cc.Parent = &c
		c.Children = append(c.Children, cc)
	}
	return &c
}

// operation answers POST /restconf/operations/MODULE:RPC.
func (q *request) operation(raw string) {
	name, err := url.PathUnescape(raw)
	if err != nil || strings.Contains(name, "/") {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: "bad operation name"})
		return
	}
	mod, opName, _ := strings.Cut(name, ":")
	var rpc *schema.Node
	for _, r := range q.s.invocable() {
		if r.Module.Name == mod && r.Name == opName {
			rpc = r
		}
	}
	if rpc == nil {
		q.fail(&rcError{status: http.StatusNotFound, Type: "protocol", Tag: "invalid-value", Message: "no such operation: " + name})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, q.s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			q.fail(&rcError{status: http.StatusRequestEntityTooLarge, Type: "transport", Tag: "too-big", Message: fmt.Sprintf("request body larger than %d bytes", q.s.cfg.MaxBody)})
			return
		}
		q.fail(&rcError{status: http.StatusBadRequest, Type: "transport", Tag: "malformed-message", Message: "reading the request: " + err.Error()})
		return
	}
	isJSON := true
	ct := q.r.Header.Get("Content-Type")
	switch mt, _, _ := mime.ParseMediaType(ct); {
	case ct == "" && len(bytes.TrimSpace(body)) > 0:
		// RFC 8040 §5.2: a message-body is described by its Content-Type.
		q.fail(&rcError{status: http.StatusUnsupportedMediaType, Type: "protocol", Tag: "invalid-value", Message: "a request body needs a Content-Type"})
		return
	case ct == "", mt == "application/yang-data+json", mt == "application/json":
	case mt == "application/yang-data+xml", mt == "application/xml":
		isJSON = false
	default:
		q.fail(&rcError{status: http.StatusUnsupportedMediaType, Type: "protocol", Tag: "invalid-value", Message: "content type " + mt + " is not supported"})
		return
	}
	var op string
	if isJSON {
		var jerr *schema.Error
		if op, jerr = q.s.schema.JSONInput(rpc, body); jerr != nil {
			q.fail(&rcError{status: http.StatusBadRequest, Type: jerr.Type(), Tag: jerr.Tag, AppTag: jerr.AppTag, Path: q.s.modulePath(jerr.Path, q.s.schema.ModuleByPrefix), Message: jerr.Message})
			return
		}
		if op == "" {
			op = "<" + rpc.Name + ` xmlns="` + rpc.Module.Namespace + `"/>`
		}
	} else if op, err = xmlInput(rpc, body); err != nil {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "rpc", Tag: "malformed-message", Message: err.Error()})
		return
	}
	root, rerr := q.exchange(op)
	if rerr != nil {
		q.fail(rerr)
		return
	}
	var out []*schema.XML
	for _, c := range root.Children {
		if c.Name != "ok" {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		q.w.WriteHeader(http.StatusNoContent)
		return
	}
	var output *schema.Node
	for _, c := range rpc.Children {
		if c.Kind == schema.Output {
			output = c
		}
	}
	var o bytes.Buffer
	if q.json {
		o.WriteString(`{"` + rpc.Module.Name + `:output":{`)
		err = q.s.schema.WriteJSON(&o, output, out, rpc.Module)
		o.WriteString("}}")
	} else {
		var sb strings.Builder
		sb.WriteString(`<output xmlns="` + rpc.Module.Namespace + `">`)
		for _, c := range out {
			c.Encode(&sb, rpc.Module.Namespace, true)
		}
		sb.WriteString("</output>")
		o.WriteString(sb.String())
	}
	if err != nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: " + err.Error()})
		return
	}
	q.send(http.StatusOK, o.String())
}

// xmlInput turns <input xmlns="MODULE-NS">...</input> (RFC 8040 §3.6.1)
// into the operation element, keeping the namespace declarations in
// scope.
func xmlInput(rpc *schema.Node, body []byte) (string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "<" + rpc.Name + ` xmlns="` + rpc.Module.Namespace + `"/>`, nil
	}
	x, err := schema.ParseXML(body, schema.Limits{Depth: 64, Elements: 1 << 16})
	if err != nil {
		return "", fmt.Errorf("input is not XML: %w", err)
	}
	if x.Name != "input" || x.NS != rpc.Module.Namespace {
		return "", fmt.Errorf("the root element must be <input xmlns=%q>, not <%s xmlns=%q>", rpc.Module.Namespace, x.Name, x.NS)
	}
	x.Name = rpc.Name
	var sb strings.Builder
	x.Encode(&sb, "", true)
	return sb.String(), nil
}

// escape escapes s for XML text or an attribute value; what XML 1.0 §2.2
// does not allow in a document (control characters, a request path's
// %01) becomes U+FFFD, so an error body stays well-formed.
func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// pick returns the sub-selection of fields for the node name, and false
// when fields (the fields query parameter) select something else; nil
// fields select everything.
func pick(fields []*field, name string) ([]*field, bool) {
	if fields == nil {
		return nil, true
	}
	var hit *field
	for _, f := range fields {
		if f.name == name {
			hit = f
		}
	}
	if hit == nil {
		return nil, false
	}
	return hit.children, true
}
