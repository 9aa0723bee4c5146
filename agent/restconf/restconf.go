// Package restconf serves the attester over RESTCONF (RFC 8040) on HTTPS
// with TLS 1.3: the server certificate is the IDevID with its key in the
// TPM, client certificates are required and mapped to user names by the
// same cert-to-name rules as NETCONF-over-TLS. Every request becomes the
// equivalent NETCONF operation on the agent's NETCONF server, so NACM,
// validation and rpc-errors are the NETCONF ones; this package resolves
// the URL against the schema, and encodes JSON (RFC 7951, typed by the
// schema) or XML.
//
// Resources: /.well-known/host-meta, /restconf, /restconf/data[/path]
// (GET, HEAD; the agent has no writable configuration; a list named
// without keys as the path's last step is every entry, as a JSON array:
// component=TAGID/rim of riv-software-inventory) with the query
// parameters content, depth, fields and with-defaults (RFC 8040 §4.8;
// any other, or one given twice, is a 400), ETag and Last-Modified
// (§3.4.1, with If-None-Match and If-Modified-Since),
// /restconf/operations and /restconf/operations/MODULE:RPC (POST), and
// /restconf/yang-library-version. ietf-restconf-monitoring lists the
// capabilities.
package restconf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
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
	"github.com/openriv/riv/pkg/schema"
)

const nsRestconf = "urn:ietf:params:xml:ns:yang:ietf-restconf"

// Capabilities are the RESTCONF capabilities this server implements
// (RFC 8040 §9.1.2), for ietf-restconf-monitoring: the NETCONF server
// lists them under restconf-state.
var Capabilities = []string{
	"urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",
	"urn:ietf:params:restconf:capability:depth:1.0",
	"urn:ietf:params:restconf:capability:fields:1.0",
	"urn:ietf:params:restconf:capability:with-defaults:1.0",
}

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
	cfg     Config
	schema  *schema.Set
	started time.Time // the data resources do not change while it runs
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
	return &Server{cfg: cfg, schema: cfg.NETCONF.Schema(), started: time.Now().UTC().Truncate(time.Second)}, nil
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

// acceptsXRD reports whether an Accept header takes an XRD document.
func acceptsXRD(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/xrd+xml" || mt == "application/*" || mt == "*/*") {
			return true
		}
	}
	return false
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
	// host-meta is an XRD document (RFC 6415), not YANG data: RFC 8040
	// §3.1's own example asks for it as application/xrd+xml.
	if r.URL.EscapedPath() == "/.well-known/host-meta" && acceptsXRD(r.Header.Get("Accept")) {
		q.json, ok = true, true // the encoding of an error reply
	} else if q.json, ok = wantJSON(r.Header.Get("Accept")); !ok {
		// RFC 8040 §7: 406, with error-tag invalid-value.
		q.json = true
		q.fail(&rcError{status: http.StatusNotAcceptable, Type: "protocol", Tag: "invalid-value", Message: "acceptable media types are application/yang-data+json and application/yang-data+xml"})
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
		if !q.methods("GET", "HEAD") || !q.noParams() {
			return
		}
		w.Header().Set("Content-Type", "application/xrd+xml")
		io.WriteString(w, `<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0"><Link rel="restconf" href="/restconf"/></XRD>`)
	case path == "/restconf" || path == "/restconf/":
		if !q.methods("GET", "HEAD") || !q.noParams() {
			return
		}
		if q.json {
			q.send(http.StatusOK, `{"ietf-restconf:restconf":{"data":{},"operations":{},"yang-library-version":"2019-01-04"}}`)
		} else {
			q.send(http.StatusOK, `<restconf xmlns="`+nsRestconf+`"><data/><operations/><yang-library-version>2019-01-04</yang-library-version></restconf>`)
		}
	case path == "/restconf/yang-library-version":
		if !q.methods("GET", "HEAD") || !q.noParams() {
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
		if !q.methods("GET", "HEAD") || !q.noParams() {
			return
		}
		q.operations()
	case strings.HasPrefix(path, "/restconf/operations/"):
		if !q.methods("POST") || !q.noParams() {
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

// knownParams are RFC 8040 §4.8's query parameters; the data resource
// implements the first four.
var knownParams = map[string]bool{"content": true, "depth": true, "fields": true, "with-defaults": true,
	"filter": true, "insert": true, "point": true, "start-time": true, "stop-time": true}

// params parses the query string strictly (RFC 8040 §4.8): a parameter
// RESTCONF does not define, one this resource does not support, or one
// given twice is a 400.
func (q *request) params(allowed ...string) (map[string]string, bool) {
	out := map[string]string{}
	raw := q.r.URL.RawQuery
	if raw == "" {
		return out, true
	}
	for _, part := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		name, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: "malformed query string"})
			return nil, false
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		switch {
		case !knownParams[name]:
			q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("unknown query parameter %q", name)})
			return nil, false
		case !ok:
			q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("query parameter %q is not supported on this resource", name)})
			return nil, false
		}
		if _, dup := out[name]; dup {
			q.fail(&rcError{status: http.StatusBadRequest, Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("query parameter %q given twice", name)})
			return nil, false
		}
		out[name] = val
	}
	return out, true
}

func (q *request) noParams() bool {
	_, ok := q.params()
	return ok
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

// exchange runs one NETCONF operation and returns the reply, or its
// rpc-errors as a RESTCONF error.
func (q *request) exchange(op string) (*schema.XML, *rcError) {
	msg := `<rpc xmlns="` + netconf.NSBase + `" message-id="1">` + op + `</rpc>`
	reply := q.s.cfg.NETCONF.Exchange(q.r.Context(), q.user, []byte(msg))
	root, err := schema.ParseXML(reply, schema.Limits{})
	if err != nil || root.Name != "rpc-reply" {
		return nil, &rcError{status: http.StatusInternalServerError, Type: "application", Tag: "operation-failed", Message: "internal: unreadable reply"}
	}
	var errs []*rcError
	for _, c := range root.Children {
		if c.Name != "rpc-error" {
			continue
		}
		e := &rcError{}
		for _, f := range c.Children {
			switch f.Name {
			case "error-type":
				e.Type = f.Text
			case "error-tag":
				e.Tag = f.Text
			case "error-app-tag":
				e.AppTag = f.Text
			case "error-message":
				e.Message = f.Text
			case "error-path":
				e.Path = q.s.modulePath(f.Text, func(prefix string) *schema.Module {
					if ns, ok := f.Resolve(prefix); ok {
						return q.s.schema.ModuleByNS(ns)
					}
					return nil
				})
			}
		}
		errs = append(errs, e)
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

// operations lists the RPCs that can be invoked here (RFC 8040 §3.3.2):
// those of the modules the agent implements other than the NETCONF
// protocol's own.
func (q *request) operations() {
	var b bytes.Buffer
	if q.json {
		b.WriteString(`{"ietf-restconf:operations":{`)
	} else {
		b.WriteString(`<operations xmlns="` + nsRestconf + `">`)
	}
	n := 0
	for _, rpc := range q.s.invocable() {
		if q.json {
			if n > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%s:%s":[null]`, rpc.Module.Name, rpc.Name)
		} else {
			fmt.Fprintf(&b, `<%s xmlns="%s"/>`, rpc.Name, rpc.Module.Namespace)
		}
		n++
	}
	if q.json {
		b.WriteString("}}")
	} else {
		b.WriteString("</operations>")
	}
	q.send(http.StatusOK, b.String())
}

// invocable are the operations RESTCONF offers: the RFC 9684 RPCs.
func (s *Server) invocable() []*schema.Node {
	var out []*schema.Node
	for _, rpc := range s.schema.RPCs {
		if rpc.Module.Namespace == netconf.NSTPM {
			out = append(out, rpc)
		}
	}
	return out
}

// rcError is an error response (RFC 8040 §7.1).
type rcError struct {
	status                           int
	Type, Tag, AppTag, Message, Path string
	more                             []*rcError
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
			if x.Path != "" {
				b.WriteString(`,"error-path":`)
				writeString(&b, x.Path)
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
			if x.Path != "" {
				// In XML the path takes prefixes, declared on the element
				// (RFC 7950 §9.13.2).
				path, decls := q.s.xmlPath(x.Path)
				b.WriteString("<error-path")
				for _, d := range decls {
					b.WriteString(" xmlns:" + d[0] + `="` + escape(d[1]) + `"`)
				}
				b.WriteString(">" + escape(path) + "</error-path>")
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

// etag is a strong entity tag of a representation (RFC 8040 §3.4.1.2).
func etag(body []byte) string {
	h := sha256.Sum256(body)
	return `"` + hex.EncodeToString(h[:12]) + `"`
}

// splitPath splits an instance-identifier into its node segments, at the
// slashes outside predicates and quoted values.
func splitPath(p string) []string {
	var out []string
	depth, quote, start := 0, byte(0), 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == '/' && depth == 0:
			if i > start {
				out = append(out, p[start:i])
			}
			start = i + 1
		}
	}
	if start < len(p) {
		out = append(out, p[start:])
	}
	return out
}

// segmentPrefixes lists the prefixes of a path segment's node name and of
// its predicates' key names (quoted values are skipped).
func segmentPrefixes(seg string) []string {
	var out []string
	quote, word := byte(0), -1
	for i := 0; i <= len(seg); i++ {
		var c byte
		if i < len(seg) {
			c = seg[i]
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ':' && word >= 0:
			out = append(out, seg[word:i])
			word = -1
		case c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			if word < 0 {
				word = i
			}
		default:
			word = -1
		}
	}
	return out
}

// modulePath rewrites an instance-identifier written with prefixes (as
// the schema reports it, or a NETCONF error-path declares them) into the
// JSON form of RFC 7951 §6.11, the form an rcError keeps: a node is
// qualified by its module's name where its module differs from its
// parent's, and key names in predicates are not qualified. moduleOf maps
// a prefix to its module; a prefix it does not know leaves the path as it
// is.
func (s *Server) modulePath(p string, moduleOf func(prefix string) *schema.Module) string {
	if p == "" {
		return ""
	}
	var b strings.Builder
	prev := ""
	for _, seg := range splitPath(p) {
		name, pred, _ := strings.Cut(seg, "[")
		pfx, local, ok := strings.Cut(name, ":")
		m := moduleOf(pfx)
		if !ok || m == nil {
			return p
		}
		b.WriteByte('/')
		if m.Name != prev {
			b.WriteString(m.Name + ":")
			prev = m.Name
		}
		b.WriteString(local)
		if pred != "" {
			for _, kp := range segmentPrefixes(pred) {
				pred = strings.Replace(pred, kp+":", "", 1)
			}
			b.WriteString("[" + pred)
		}
	}
	return b.String()
}

// xmlPath rewrites a JSON-form instance-identifier (module names) with
// the modules' prefixes, returning the prefix declarations it needs.
func (s *Server) xmlPath(p string) (string, [][2]string) {
	var b strings.Builder
	var decls [][2]string
	seen := map[string]bool{}
	var cur *schema.Module
	for _, seg := range splitPath(p) {
		name, pred, hasPred := strings.Cut(seg, "[")
		if mod, local, ok := strings.Cut(name, ":"); ok {
			if cur = s.schema.Module(mod); cur == nil {
				return p, nil
			}
			name = local
		}
		if cur == nil {
			return p, nil
		}
		if !seen[cur.Prefix] {
			seen[cur.Prefix] = true
			decls = append(decls, [2]string{cur.Prefix, cur.Namespace})
		}
		b.WriteString("/" + cur.Prefix + ":" + name)
		if hasPred {
			// Key names take the list's prefix: [name='x'] -> [p:name='x'].
			var out strings.Builder
			for _, part := range strings.SplitAfter(pred, "[") {
				if k, rest, ok := strings.Cut(part, "="); ok && !strings.Contains(k, ":") && !strings.ContainsAny(k, "'\"") {
					part = cur.Prefix + ":" + k + "=" + rest
				}
				out.WriteString(part)
			}
			b.WriteString("[" + out.String())
		}
	}
	return b.String(), decls
}
