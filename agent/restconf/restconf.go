// Package restconf serves the attester over RESTCONF (RFC 8040) on HTTPS
// with TLS 1.3: the server certificate is the IDevID with its key in the
// TPM, client certificates are required and mapped to user names by the
// same cert-to-name rules as NETCONF-over-TLS. Every request becomes the
// equivalent NETCONF operation on the agent's NETCONF server, so NACM,
// validation and rpc-errors are the NETCONF ones; this package does the
// URL and the RFC 7951 JSON (or XML) encoding.
//
// Resources: /.well-known/host-meta, /restconf, /restconf/data[/path]
// (GET, HEAD; the agent has no writable configuration),
// /restconf/operations and /restconf/operations/MODULE:RPC (POST), and
// /restconf/yang-library-version.
package restconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openriv/riv/agent/netconf"
)

const nsRestconf = "urn:ietf:params:xml:ns:yang:ietf-restconf"

// Config configures a Server.
type Config struct {
	// NETCONF holds the datastore and runs the operations.
	NETCONF *netconf.Server
	// TLS: the IDevID certificate, the client CAs and cert-to-name.
	TLS netconf.TLSConfig
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	Logger  *slog.Logger
}

// Server is a RESTCONF server.
type Server struct {
	cfg Config
}

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.NETCONF == nil {
		return nil, errors.New("restconf: a NETCONF server is required")
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg}, nil
}

// Serve accepts HTTPS connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			MinVersion:                  tls.VersionTLS13,
			Certificates:                []tls.Certificate{s.cfg.TLS.Certificate},
			ClientAuth:                  tls.RequireAndVerifyClientCert,
			ClientCAs:                   s.cfg.TLS.ClientCAs,
			SessionTicketsDisabled:      s.cfg.TLS.DisableSessionTickets,
			DynamicRecordSizingDisabled: true,
		},
		// No slow clients holding connections: headers, bodies and idle
		// keep-alives are all bounded.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelInfo),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err := hs.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// request is one RESTCONF request being answered.
type request struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	user string
	json bool // response encoding
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{s: s, w: w, r: r}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		q.json = true
		q.fail(&rcError{status: http.StatusUnauthorized, Type: "protocol", Tag: "access-denied", Message: "a verified client certificate is required"})
		return
	}
	q.user = netconf.MapCertToName(r.TLS.VerifiedChains, s.cfg.TLS.CertToName)
	var ok bool
	if q.json, ok = wantJSON(r.Header.Get("Accept")); !ok {
		q.json = true
		q.fail(&rcError{status: http.StatusNotAcceptable, Type: "protocol", Tag: "operation-not-supported", Message: "acceptable media types are application/yang-data+json and application/yang-data+xml"})
		return
	}
	if q.user == "" {
		s.cfg.Logger.Warn("restconf client certificate maps to no user", "remote", r.RemoteAddr)
		q.fail(&rcError{status: http.StatusForbidden, Type: "protocol", Tag: "access-denied", Message: "the client certificate maps to no user"})
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case path == "/.well-known/host-meta":
		if !q.methods("GET", "HEAD") {
			return
		}
		w.Header().Set("Content-Type", "application/xrd+xml")
		io.WriteString(w, `<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0"><Link rel="restconf" href="/restconf"/></XRD>`)
	case path == "/restconf" || path == "/restconf/":
		if !q.methods("GET", "HEAD") {
			return
		}
		if q.json {
			q.send(http.StatusOK, `{"ietf-restconf:restconf":{"data":{},"operations":{},"yang-library-version":"2019-01-04"}}`)
		} else {
			q.send(http.StatusOK, `<restconf xmlns="`+nsRestconf+`"><data/><operations/><yang-library-version>2019-01-04</yang-library-version></restconf>`)
		}
	case path == "/restconf/yang-library-version":
		if !q.methods("GET", "HEAD") {
			return
		}
		if q.json {
			q.send(http.StatusOK, `{"ietf-restconf:yang-library-version":"2019-01-04"}`)
		} else {
			q.send(http.StatusOK, `<yang-library-version xmlns="`+nsRestconf+`">2019-01-04</yang-library-version>`)
		}
	case path == "/restconf/data" || strings.HasPrefix(path, "/restconf/data/"):
		if !q.methods("GET", "HEAD") {
			return
		}
		q.data(strings.TrimPrefix(strings.TrimPrefix(path, "/restconf/data"), "/"))
	case path == "/restconf/operations":
		if !q.methods("GET", "HEAD") {
			return
		}
		if q.json {
			q.send(http.StatusOK, `{"ietf-restconf:operations":{"ietf-tpm-remote-attestation:tpm20-challenge-response-attestation":[null],"ietf-tpm-remote-attestation:log-retrieval":[null]}}`)
		} else {
			q.send(http.StatusOK, `<operations xmlns="`+nsRestconf+`"><tpm20-challenge-response-attestation xmlns="`+netconf.NSTPM+`"/><log-retrieval xmlns="`+netconf.NSTPM+`"/></operations>`)
		}
	case strings.HasPrefix(path, "/restconf/operations/"):
		if !q.methods("POST") {
			return
		}
		q.operation(strings.TrimPrefix(path, "/restconf/operations/"))
	default:
		q.fail(&rcError{status: http.StatusNotFound, Type: "protocol", Tag: "invalid-value", Message: "no such resource"})
	}
}

// wantJSON picks the response encoding from Accept: JSON unless only
// XML is acceptable; ok is false when neither is.
func wantJSON(accept string) (json, ok bool) {
	if strings.TrimSpace(accept) == "" {
		return true, true
	}
	xmlOK := false
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/yang-data+json", "application/json", "*/*", "application/*":
			return true, true
		case "application/yang-data+xml", "application/xml":
			xmlOK = true
		}
	}
	return false, xmlOK
}

func (q *request) methods(allowed ...string) bool {
	for _, m := range allowed {
		if q.r.Method == m {
			return true
		}
	}
	allow := strings.Join(append(allowed, "OPTIONS"), ", ")
	q.w.Header().Set("Allow", allow)
	if q.r.Method == "OPTIONS" {
		q.w.WriteHeader(http.StatusOK)
		return false
	}
	q.fail(&rcError{status: http.StatusMethodNotAllowed, Type: "protocol", Tag: "operation-not-supported", Message: q.r.Method + " is not supported here; the agent's data is read-only"})
	return false
}

func (q *request) send(status int, body string) {
	ct := "application/yang-data+json"
	if !q.json {
		ct = "application/yang-data+xml"
	}
	q.w.Header().Set("Content-Type", ct)
	q.w.Header().Set("Cache-Control", "no-store")
	q.w.WriteHeader(status)
	if q.r.Method != "HEAD" {
		io.WriteString(q.w, body)
	}
}

// exchange runs one NETCONF operation and returns the reply's content,
// or the rpc-errors as a RESTCONF error.
func (q *request) exchange(op string) (*xnode, *rcError) {
	msg := `<rpc xmlns="` + netconf.NSBase + `" message-id="1">` + op + `</rpc>`
	reply := q.s.cfg.NETCONF.Exchange(q.r.Context(), q.user, []byte(msg))
	root, err := parseXML(reply)
	if err != nil || root.name != "rpc-reply" {
		return nil, &rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: unreadable reply"}
	}
	var errs []*rcError
	for _, c := range root.children {
		if c.name == "rpc-error" {
			e := &rcError{}
			for _, f := range c.children {
				switch f.name {
				case "error-type":
					e.Type = f.text
				case "error-tag":
					e.Tag = f.text
				case "error-app-tag":
					e.AppTag = f.text
				case "error-message":
					e.Message = f.text
				}
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		errs[0].more = errs[1:]
		errs[0].status = statusOf(errs[0].Tag, errs[0].AppTag)
		if errs[0].Tag == "access-denied" {
			q.s.cfg.Logger.Warn("restconf access denied", "user", q.user, "path", q.r.URL.Path)
		}
		return nil, errs[0]
	}
	return root, nil
}

// data answers GET /restconf/data[/path].
func (q *request) data(rawPath string) {
	segs, err := parsePath(rawPath)
	if err != nil {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: err.Error()})
		return
	}
	var filter string
	if len(segs) == 0 {
		// Everything RESTCONF serves: the RFC 9684 data, the keystore
		// and the YANG library.
		filter = `<rats-support-structures xmlns="` + netconf.NSTPM + `"/><keystore xmlns="` + netconf.NSKeystore + `"/><yang-library xmlns="` + netconf.NSYangLib + `"/>`
	} else {
		filter = topFilter(segs)
	}
	root, rerr := q.exchange(`<get><filter type="subtree">` + filter + `</filter></get>`)
	if rerr != nil {
		q.fail(rerr)
		return
	}
	var dataNode *xnode
	for _, c := range root.children {
		if c.name == "data" {
			dataNode = c
		}
	}
	if dataNode == nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: reply without data"})
		return
	}
	var b bytes.Buffer
	if len(segs) == 0 {
		if q.json {
			b.WriteString(`{"ietf-restconf:data":{`)
			err = writeJSONMembers(&b, "data", nsRestconf, dataNode.children)
			b.WriteString("}}")
		} else {
			b.WriteString(`<data xmlns="` + nsRestconf + `">`)
			for _, c := range dataNode.children {
				writeXML(&b, c, nsRestconf)
			}
			b.WriteString("</data>")
		}
	} else {
		target, parent := find(dataNode, segs)
		if target == nil {
			q.fail(&rcError{status: http.StatusNotFound, Type: "protocol", Tag: "invalid-value", Message: "no data at " + rawPath})
			return
		}
		if q.json {
			b.WriteByte('{')
			// The target is named with its module (RFC 8040 §3.5.3).
			err = writeJSONMembers(&b, parent, "", []*xnode{target})
			b.WriteByte('}')
		} else {
			writeXML(&b, target, "")
		}
	}
	if err != nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: " + err.Error()})
		return
	}
	q.send(http.StatusOK, b.String())
}

// operation answers POST /restconf/operations/MODULE:RPC.
func (q *request) operation(raw string) {
	name, err := url.PathUnescape(raw)
	if err != nil || strings.Contains(name, "/") {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: "bad operation name"})
		return
	}
	mod, op, ok := strings.Cut(name, ":")
	if !ok || mod != "ietf-tpm-remote-attestation" || (op != "tpm20-challenge-response-attestation" && op != "log-retrieval") {
		q.fail(&rcError{status: http.StatusNotFound, Type: "protocol", Tag: "invalid-value", Message: "no such operation: " + name})
		return
	}
	isJSON := true
	if ct := q.r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "application/yang-data+json", "application/json":
		case "application/yang-data+xml", "application/xml":
			isJSON = false
		default:
			q.fail(&rcError{status: http.StatusUnsupportedMediaType, Type: "protocol", Tag: "invalid-value", Message: "content type " + mt + " is not supported"})
			return
		}
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
	children, decls, err := inputXML(body, isJSON, mod)
	if err != nil {
		q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "malformed-message", Message: err.Error()})
		return
	}
	var b strings.Builder
	b.WriteString("<" + op + ` xmlns="` + netconf.NSTPM + `"`)
	for _, a := range decls {
		b.WriteString(" xmlns:" + a.Name.Local + `="` + escape(a.Value) + `"`)
	}
	b.WriteString(">" + children + "</" + op + ">")
	root, rerr := q.exchange(b.String())
	if rerr != nil {
		q.fail(rerr)
		return
	}
	var out []*xnode
	for _, c := range root.children {
		if c.name != "ok" {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		q.w.WriteHeader(http.StatusNoContent)
		return
	}
	var o bytes.Buffer
	if q.json {
		o.WriteString(`{"` + mod + `:output":{`)
		err = writeJSONMembers(&o, "output", netconf.NSTPM, out)
		o.WriteString("}}")
	} else {
		o.WriteString(`<output xmlns="` + netconf.NSTPM + `">`)
		for _, c := range out {
			writeXML(&o, c, netconf.NSTPM)
		}
		o.WriteString("</output>")
	}
	if err != nil {
		q.fail(&rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: " + err.Error()})
		return
	}
	q.send(http.StatusOK, o.String())
}

// rcError is an error response (RFC 8040 §7.1).
type rcError struct {
	status                     int
	Type, Tag, AppTag, Message string
	more                       []*rcError
}

// statusOf maps an error-tag to its HTTP status (RFC 8040 §7). The
// operation-failed of a violated YANG constraint (RFC 7950 §15: its
// error-app-tag says which) is the client's input, answered 400 like
// invalid-value, rather than the 500 of a server failure.
func statusOf(tag, appTag string) int {
	if tag == "operation-failed" {
		switch appTag {
		case "must-violation", "data-not-unique", "too-many-elements", "too-few-elements", "missing-choice", "instance-required":
			return http.StatusBadRequest
		}
	}
	switch tag {
	case "in-use", "lock-denied", "resource-denied", "data-exists", "data-missing":
		return http.StatusConflict
	case "too-big":
		return http.StatusRequestEntityTooLarge
	case "access-denied":
		return http.StatusForbidden
	case "operation-not-supported":
		return http.StatusNotImplemented
	case "rollback-failed", "partial-operation", "operation-failed":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func (q *request) fail(e *rcError) {
	all := append([]*rcError{e}, e.more...)
	var b bytes.Buffer
	if q.json {
		b.WriteString(`{"ietf-restconf:errors":{"error":[`)
		for i, x := range all {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"error-type":`)
			writeString(&b, x.Type)
			b.WriteString(`,"error-tag":`)
			writeString(&b, x.Tag)
			if x.AppTag != "" {
				b.WriteString(`,"error-app-tag":`)
				writeString(&b, x.AppTag)
			}
			if x.Message != "" {
				b.WriteString(`,"error-message":`)
				writeString(&b, x.Message)
			}
			b.WriteByte('}')
		}
		b.WriteString("]}}")
	} else {
		b.WriteString(`<errors xmlns="` + nsRestconf + `">`)
		for _, x := range all {
			b.WriteString("<error><error-type>" + escape(x.Type) + "</error-type><error-tag>" + escape(x.Tag) + "</error-tag>")
			if x.AppTag != "" {
				b.WriteString("<error-app-tag>" + escape(x.AppTag) + "</error-app-tag>")
			}
			if x.Message != "" {
				b.WriteString("<error-message>" + escape(x.Message) + "</error-message>")
			}
			b.WriteString("</error>")
		}
		b.WriteString("</errors>")
	}
	q.send(e.status, b.String())
}

// segment is one step of a data resource identifier: module (when given),
// name, and key values.
type segment struct {
	module, name string
	keys         []string
}

const maxSegments = 32

// parsePath parses RFC 8040 §3.5.3 api-path after /restconf/data/.
func parsePath(raw string) ([]segment, error) {
	if raw == "" {
		return nil, nil
	}
	parts := strings.Split(raw, "/")
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("path deeper than %d", maxSegments)
	}
	var out []segment
	for i, p := range parts {
		id, keys, hasKeys := strings.Cut(p, "=")
		id, err := url.PathUnescape(id)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i+1, err)
		}
		var s segment
		if mod, name, ok := strings.Cut(id, ":"); ok {
			if _, known := namespaces[mod]; !known {
				return nil, fmt.Errorf("unknown module %q", mod)
			}
			s.module, s.name = mod, name
		} else if i == 0 {
			return nil, fmt.Errorf("the first segment %q must name its module", id)
		} else {
			s.name = id
		}
		if !validName(s.name) {
			return nil, fmt.Errorf("%q is not a YANG identifier", s.name)
		}
		if hasKeys {
			for _, k := range strings.Split(keys, ",") {
				v, err := url.PathUnescape(k)
				if err != nil {
					return nil, fmt.Errorf("key of %s: %w", s.name, err)
				}
				s.keys = append(s.keys, v)
			}
		}
		parent := "data"
		if i > 0 {
			parent = out[i-1].name
		}
		sn := lookup(parent, s.name)
		switch {
		case sn.kind == list && sn.key != "" && len(s.keys) != 1:
			return nil, fmt.Errorf("list %s needs its key %s (%s=VALUE)", s.name, sn.key, s.name)
		case sn.kind == list && sn.key == "":
			return nil, fmt.Errorf("list %s has no key and cannot be addressed", s.name)
		case sn.kind != list && hasKeys:
			return nil, fmt.Errorf("%s is not a list", s.name)
		case sn.kind == leafList:
			return nil, fmt.Errorf("leaf-list %s cannot be addressed alone", s.name)
		}
		out = append(out, s)
	}
	return out, nil
}

// topFilter selects the path's top-level node. The tree below it is small
// (a few TPMs, keys and modules), so list entries are chosen by find
// rather than by content-match nodes, which would compare identity keys
// as text.
func topFilter(segs []segment) string {
	return "<" + segs[0].name + ` xmlns="` + namespaces[segs[0].module] + `"/>`
}

// find walks the filtered data along the path, choosing list entries by
// key, and returns the target node and its parent's name.
func find(data *xnode, segs []segment) (*xnode, string) {
	cur := data
	parent := "data"
	for i, s := range segs {
		var next *xnode
		sn := lookup(parent, s.name)
		for _, c := range cur.children {
			if c.name != s.name || (s.module != "" && modules[c.ns] != s.module) {
				continue
			}
			if sn.kind == list {
				if !keyMatches(c, sn.key, s.keys[0]) {
					continue
				}
			}
			next = c
			break
		}
		if next == nil {
			return nil, ""
		}
		if i < len(segs)-1 {
			parent = s.name
		}
		cur = next
	}
	return cur, parent
}

func keyMatches(entry *xnode, key, want string) bool {
	for _, c := range entry.children {
		if c.name != key {
			continue
		}
		got := c.text
		if i := strings.IndexByte(got, ':'); i >= 0 && c.textNS != "" {
			got = modules[c.textNS] + ":" + got[i+1:]
		}
		return got == want
	}
	return false
}
