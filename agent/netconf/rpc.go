package netconf

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/schema"
)

// Bounds on one received message beyond its size: element nesting and
// count (a 1 MiB message of empty elements is 100k of them), and the
// elements of a subtree filter, which is matched against the data.
const (
	maxXMLDepth       = 64
	maxXMLElements    = 1 << 16
	maxFilterElements = 4096
)

// implementedOps are the operations this server carries out; the others
// its modules define (edit-config, lock, ...) are refused with
// operation-not-supported: the agent serves state, which is not edited.
var implementedOps = map[string]bool{
	NSBase + " get": true, NSBase + " get-config": true, NSBase + " close-session": true, NSBase + " kill-session": true,
	NSMonitoring + " get-schema": true, NSNMDA + " get-data": true,
	NSTPM + " tpm20-challenge-response-attestation": true, NSTPM + " log-retrieval": true,
}

// handle answers one <rpc>; done means the session ends after the reply.
func (s *Server) handle(ctx context.Context, ss *session, msg []byte) (reply []byte, done bool) {
	x, err := schema.ParseXML(msg, schema.Limits{Depth: maxXMLDepth, Elements: maxXMLElements})
	if err != nil {
		return rpcErrorReply(nil, &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: "not a well-formed <rpc>: " + err.Error()}, nil), true
	}
	if x.Name != "rpc" || x.NS != NSBase {
		return rpcErrorReply(nil, &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: "expected <rpc> in the base namespace"}, nil), true
	}
	if !hasAttr(x, "message-id") {
		// RFC 6241 §4.1 and App. A.
		return rpcErrorReply(x, &attester.RPCError{Type: "rpc", Tag: "missing-attribute", Message: "message-id is required",
			Info: []attester.ErrorInfo{{Name: "bad-attribute", Value: "message-id"}, {Name: "bad-element", Value: "rpc"}}}, nil), false
	}
	if strings.TrimSpace(x.Text) != "" || len(x.Children) != 1 {
		return rpcErrorReply(x, &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: fmt.Sprintf("<rpc> must hold exactly one operation, it holds %d", len(x.Children))}, nil), false
	}
	op := x.Children[0]
	name := op.Name
	ss.inRPCs()
	if !s.nacm().allowed(ss.user, op.NS, name) {
		s.cfg.Logger.Warn("access denied", "session", ss.id, "user", ss.user, "rpc", name)
		return s.errorReply(ss, x, &attester.RPCError{Type: "protocol", Tag: "access-denied", Message: "access to " + name + " denied by NACM"}), false
	}
	rpc := s.schema.FindRPC(op.NS, name)
	if rpc == nil || !implementedOps[op.NS+" "+name] {
		ss.badRPC()
		return s.errorReply(ss, x, &attester.RPCError{Type: "protocol", Tag: "operation-not-supported", Message: fmt.Sprintf("operation %s (%s) is not supported", name, op.NS)}), false
	}
	in, verr := s.schema.Input(rpc, op, s.stateElems)
	if verr != nil {
		ss.badRPC()
		s.cfg.Logger.Info("invalid rpc", "session", ss.id, "rpc", name, "tag", verr.Tag, "message", verr.Message)
		return s.errorReply(ss, x, fromSchema(verr)), false
	}
	var body string
	var rerr error
	switch op.NS + " " + name {
	case NSBase + " get":
		body, rerr = s.opGet(in, false)
	case NSBase + " get-config":
		body, rerr = s.opGet(in, true)
	case NSNMDA + " get-data":
		body, rerr = s.opGetData(in)
	case NSMonitoring + " get-schema":
		body, rerr = s.opGetSchema(in)
	case NSBase + " close-session":
		return okReply(x), true
	case NSBase + " kill-session":
		rerr = s.opKillSession(ss, in)
	case NSTPM + " tpm20-challenge-response-attestation":
		body, rerr = s.opChallenge(ctx, ss, in)
	case NSTPM + " log-retrieval":
		body, rerr = s.opLogRetrieval(ctx, in)
	}
	if rerr != nil {
		re, ok := rerr.(*attester.RPCError)
		if !ok {
			re = &attester.RPCError{Type: "application", Tag: "operation-failed", Message: rerr.Error()}
		}
		s.cfg.Logger.Info("rpc error", "session", ss.id, "rpc", name, "tag", re.Tag, "message", re.Message)
		return s.errorReply(ss, x, re), false
	}
	if body == "" {
		return okReply(x), false
	}
	return replyWith(x, body), false
}

func hasAttr(x *schema.XML, name string) bool {
	for _, a := range x.Attrs {
		if a.Name == name && a.NS == "" {
			return true
		}
	}
	return false
}

// fromSchema turns a validation failure into an rpc-error.
func fromSchema(e *schema.Error) *attester.RPCError {
	re := &attester.RPCError{Type: e.Type(), Tag: e.Tag, AppTag: e.AppTag, Path: e.Path, Message: e.Message}
	for _, i := range e.Info {
		ns := i.NS
		if ns == NSBase {
			ns = ""
		}
		re.Info = append(re.Info, attester.ErrorInfo{Name: i.Name, NS: ns, Value: i.Value})
	}
	return re
}

func (s *Server) errorReply(ss *session, rpc *schema.XML, e *attester.RPCError) []byte {
	ss.rpcError()
	return rpcErrorReply(rpc, e, s.namespaceOf)
}

// replyHead opens an rpc-reply carrying the attributes of rpc (RFC 6241
// §4.2: message-id and any others, unchanged).
func replyHead(rpc *schema.XML) string {
	var b strings.Builder
	b.WriteString(`<rpc-reply xmlns="` + NSBase + `"`)
	if rpc != nil {
		declared := map[string]string{}
		for i, a := range rpc.Attrs {
			name := a.Name
			switch a.NS {
			case "":
			case "http://www.w3.org/XML/1998/namespace":
				// Bound to xml by definition; it may not be declared
				// (Namespaces in XML §3).
				name = "xml:" + name
			default:
				p, ok := declared[a.NS]
				if !ok {
					p = "a" + strconv.Itoa(i)
					declared[a.NS] = p
					b.WriteString(` xmlns:` + p + `="`)
					xml.EscapeText(&b, []byte(a.NS))
					b.WriteByte('"')
				}
				name = p + ":" + name
			}
			b.WriteString(" " + name + `="`)
			xml.EscapeText(&b, []byte(a.Value))
			b.WriteByte('"')
		}
	}
	b.WriteByte('>')
	return b.String()
}

func replyWith(rpc *schema.XML, body string) []byte {
	return []byte(replyHead(rpc) + body + "</rpc-reply>")
}

func okReply(rpc *schema.XML) []byte { return replyWith(rpc, "<ok/>") }

// rpcErrorReply renders an rpc-error (RFC 6241 §4.3); namespaceOf
// declares the prefixes of its error-path (nil: it has none).
func rpcErrorReply(rpc *schema.XML, e *attester.RPCError, namespaceOf func(prefix string) string) []byte {
	n := El("rpc-error", Leaf("error-type", e.Type), Leaf("error-tag", e.Tag), Leaf("error-severity", "error"))
	if e.AppTag != "" {
		n.Add(Leaf("error-app-tag", e.AppTag))
	}
	if e.Path != "" && namespaceOf != nil {
		p := Leaf("error-path", e.Path)
		for _, prefix := range pathPrefixes(e.Path) {
			if ns := namespaceOf(prefix); ns != "" {
				p.Attrs = append(p.Attrs, xmlns(prefix, ns))
			}
		}
		n.Add(p)
	}
	if e.Message != "" {
		m := Leaf("error-message", e.Message)
		m.Attrs = []xml.Attr{{Name: xml.Name{Space: "xml", Local: "lang"}, Value: "en"}}
		n.Add(m)
	}
	if len(e.Info) > 0 {
		info := El("error-info")
		for _, i := range e.Info {
			info.Add(Leaf(i.Name, i.Value).InNS(i.NS))
		}
		n.Add(info)
	}
	return replyWith(rpc, n.String())
}

// pathPrefixes lists the prefixes an error-path uses, sorted.
func pathPrefixes(p string) []string {
	seen := map[string]bool{}
	for _, seg := range strings.Split(p, "/") {
		if i := strings.IndexByte(seg, ':'); i > 0 {
			seen[seg[:i]] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// badElement is the error-info of an error about element name.
func badElement(name string) []attester.ErrorInfo {
	return []attester.ErrorInfo{{Name: "bad-element", Value: name}}
}

// filterOf returns a get's subtree filter (nil: none), refusing the xpath
// filters this server does not announce (RFC 6241 §8.9).
func filterOf(in *schema.Elem, name string) ([]*filterNode, error) {
	f := in.Child(name)
	if f == nil {
		return nil, nil
	}
	for _, a := range f.XML.Attrs {
		if a.Name == "type" && a.NS == "" && a.Value != "subtree" {
			return nil, &attester.RPCError{Type: "protocol", Tag: "bad-attribute", Message: fmt.Sprintf("filter type %q is not supported: this server does not announce :xpath", a.Value),
				Info: []attester.ErrorInfo{{Name: "bad-attribute", Value: "type"}, {Name: "bad-element", Value: name}}}
		}
	}
	return parseFilter(f.XML)
}

// withDefaults reads the with-defaults parameter (RFC 6243 §4.5.1).
func withDefaults(in *schema.Elem) string {
	if v, ok := in.Leaf("with-defaults"); ok {
		return v
	}
	return "explicit" // the basic mode this server announces
}

func (s *Server) opGet(in *schema.Elem, config bool) (string, error) {
	f, err := filterOf(in, "filter")
	if err != nil {
		return "", err
	}
	return s.data(NSBase, s.datastore(config), f, 0, withDefaults(in)), nil
}

// datastore is the configuration (running, intended: the config true
// part of the state) or the whole operational state.
func (s *Server) datastore(config bool) []*Node {
	if config {
		return s.configOnly(s.stateTree())
	}
	return s.operational()
}

// data is a <data> reply in namespace ns (the base one for get and
// get-config, NMDA's for get-data) of what tree presents through the
// filter, depth and with-defaults mode.
func (s *Server) data(ns string, tree []*Node, f []*filterNode, depth int, wd string) string {
	var b strings.Builder
	b.WriteString("<data")
	if ns != NSBase {
		b.WriteString(` xmlns="` + ns + `"`)
	}
	b.WriteByte('>')
	for _, n := range s.present(tree, f, depth, wd) {
		n.encode(&b, ns)
	}
	b.WriteString("</data>")
	return b.String()
}

// datastores served by <get-data>, as the YANG library lists them: the
// running configuration (the config true part of the state), intended
// (the same: no templates), and operational.
var datastores = []string{"running", "intended", "operational"}

func (s *Server) opGetData(in *schema.Elem) (string, error) {
	ds, _ := in.Leaf("datastore")
	ds = strings.TrimPrefix(ds, "ietf-datastores:")
	f, err := filterOf(in, "subtree-filter")
	if err != nil {
		return "", err
	}
	var tree []*Node
	switch ds {
	case "operational":
		tree = s.datastore(false)
	case "running", "intended":
		tree = s.datastore(true)
	default:
		// RFC 8526 §3.1.1: a datastore the server does not support.
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: fmt.Sprintf("datastore %q is not supported", ds), Path: "/ncds:get-data/ncds:datastore"}
	}
	if cf, ok := in.Leaf("config-filter"); ok {
		tree = s.configFilter(tree, cf == "true")
	}
	depth := 0
	if md, ok := in.Leaf("max-depth"); ok && md != "unbounded" {
		depth, _ = strconv.Atoi(md)
	}
	return s.data(NSNMDA, tree, f, depth, withDefaults(in)), nil
}

func (s *Server) opGetSchema(in *schema.Elem) (string, error) {
	const path = "/ncm:get-schema"
	id, _ := in.Leaf("identifier")
	ver, _ := in.Leaf("version")
	// RFC 6022 §3.1: only YANG is served (yin is not).
	if f, ok := in.Leaf("format"); ok && f != "ietf-netconf-monitoring:yang" {
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: "only the yang format is served", Path: path + "/ncm:format"}
	}
	m, ok := s.libraryModule(id, ver)
	if !ok {
		msg := "no such schema: " + id
		if ver != "" {
			msg += "@" + ver
		}
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: msg, Path: path + "/ncm:identifier"}
	}
	var b strings.Builder
	b.WriteString(`<data xmlns="` + NSMonitoring + `">`)
	xml.EscapeText(&b, []byte(m.Text))
	b.WriteString("</data>")
	return b.String(), nil
}

func (s *Server) opKillSession(ss *session, in *schema.Elem) error {
	v, _ := in.Leaf("session-id")
	id, _ := strconv.ParseUint(v, 10, 32)
	switch {
	case uint32(id) == ss.id:
		// RFC 6241 §7.9: a session cannot kill itself.
		return &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: "a session cannot kill itself", Path: "/nc:kill-session/nc:session-id"}
	case !s.Kill(uint32(id)):
		return &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("no session %d", id), Path: "/nc:kill-session/nc:session-id"}
	}
	return nil
}

// allPCRs is the selection a challenge without tpm20-pcr-selection, or a
// selection without pcr-index, gets: every PCR of the bank.
var allPCRs = func() []int {
	out := make([]int, 24)
	for i := range out {
		out[i] = i
	}
	return out
}()

// opChallenge handles tpm20-challenge-response-attestation. The input has
// been validated against the module: types, the choice of one bank per
// selection (unique), and the must that the bank is one the TPM supports.
func (s *Server) opChallenge(ctx context.Context, ss *session, in *schema.Elem) (string, error) {
	c := in.Child("tpm20-attestation-challenge")
	nv, _ := c.Leaf("nonce-value")
	nonce, _ := base64.StdEncoding.DecodeString(nv)
	// The TPM serves its clients in turn, and rates them: a client is
	// the authenticated user (NACM's identity), over whichever transport
	// and however many sessions, so neither opening more sessions nor
	// reconnecting earns more turns or a fresh rate.
	client := "user/" + ss.user
	ch := attester.Challenge{Nonce: nonce, Client: client}
	for _, sel := range c.All("tpm20-pcr-selection") {
		// The module's stated default bank (RFC 9684 §3.1.1.2).
		bank := alg.SHA256
		if v, ok := sel.Leaf("tpm20-hash-algo"); ok {
			b, ok := parseHashIdentity(strings.TrimPrefix(v, "ietf-tcg-algs:"))
			if !ok {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: msgHashAlgo, Path: pathChallenge + "/tpm:tpm20-pcr-selection/tpm:tpm20-hash-algo"}
			}
			bank = b
		}
		pcrs := sel.All("pcr-index")
		if len(pcrs) == 0 {
			ch.Selection = append(ch.Selection, pcr.Selection{Bank: bank, PCRs: allPCRs})
			continue
		}
		var mask uint32
		for _, p := range pcrs {
			i, _ := strconv.Atoi(p.Value)
			mask |= 1 << uint(i)
		}
		ch.Selection = append(ch.Selection, pcr.FromMask(bank, mask))
	}
	if len(ch.Selection) == 0 {
		ch.Selection = []pcr.Selection{{Bank: alg.SHA256, PCRs: allPCRs}}
	}
	// Only with mtpm: the schema refuses certificate-name otherwise.
	for _, n := range c.All("certificate-name") {
		ch.CertificateNames = append(ch.CertificateNames, strings.TrimSpace(n.Value))
	}
	res, err := s.cfg.Attester.Attest(ctx, ch)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range res {
		n := El("tpm20-attestation-response",
			Leaf("certificate-name", r.CertificateName),
			Leaf("quote-data", b64(r.QuoteData)),
			Leaf("quote-signature", b64(r.QuoteSignature)),
			Leaf("up-time", strconv.FormatUint(uint64(r.UpTime), 10)),
		).InNS(NSTPM)
		for _, bank := range r.UnsignedPCRs.Banks() {
			u := El("unsigned-pcr-values", identity("tpm20-hash-algo", "taa", NSTAA, hashIdentity(bank)))
			for _, i := range r.UnsignedPCRs.Indexes(bank) {
				u.Add(El("pcr-values", Leaf("pcr-index", strconv.Itoa(i)), Leaf("pcr-value", b64(r.UnsignedPCRs.Get(bank, i)))))
			}
			n.Add(u)
		}
		n.encode(&b, NSBase)
	}
	return b.String(), nil
}

const (
	pathChallenge = "/tpm:tpm20-challenge-response-attestation/tpm:tpm20-attestation-challenge"
	msgHashAlgo   = "This platform does not support tpm20-hash-algo"
)

// opLogRetrieval handles log-retrieval. An empty result (the normal
// "nothing new since the last poll") is <ok/> (RFC 6241 §4.4): a
// node-data entry needs a log-result, whose choice of log type is
// mandatory, so there is no schema-valid way to say "no entries" with one.
func (s *Server) opLogRetrieval(ctx context.Context, in *schema.Elem) (string, error) {
	lt, _ := in.Leaf("log-type")
	lt = strings.TrimPrefix(lt, "ietf-tpm-remote-attestation:")
	var sels []attester.LogSelector
	for _, sl := range in.All("log-selector") {
		sel := attester.LogSelector{}
		for _, n := range sl.All("name") {
			sel.Names = append(sel.Names, n.Value)
		}
		if v, ok := sl.Leaf("last-entry-value"); ok {
			sel.LastEntryValue, _ = base64.StdEncoding.DecodeString(v)
		}
		if v, ok := sl.Leaf("last-index-number"); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			sel.LastIndexNumber = &n
		}
		if v, ok := sl.Leaf("timestamp"); ok {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				// yang:date-and-time allows what RFC 3339 does not (-00:00).
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: "/tpm:log-retrieval/tpm:log-selector/tpm:timestamp", Message: "timestamp: " + err.Error()}
			}
			sel.Timestamp = &tm
		}
		if v, ok := sl.Leaf("log-entry-quantity"); ok {
			q, _ := strconv.ParseUint(v, 10, 16)
			qq := uint16(q)
			sel.Quantity = &qq
		}
		sels = append(sels, sel)
	}
	nodes, err := s.cfg.Attester.RetrieveLogs(ctx, attester.LogType(lt), sels)
	if err != nil {
		return "", err
	}
	logs := El("system-event-logs").InNS(NSTPM)
	for _, nl := range nodes {
		if len(nl.Log.Events) == 0 {
			continue
		}
		nd := El("node-data", Leaf("name", nl.Name), Leaf("up-time", strconv.FormatUint(uint64(nl.UpTime), 10)))
		nd.Add(El("log-result", logResult(nl)))
		logs.Add(nd)
	}
	if len(logs.Children) == 0 {
		return "", nil
	}
	return logs.String(), nil
}

func logResult(nl attester.NodeLog) *Node {
	switch nl.Type {
	case attester.LogBIOS:
		c := El("bios-event-logs")
		for i := range nl.Log.Events {
			e := &nl.Log.Events[i]
			n := El("bios-event-entry",
				Leaf("event-number", strconv.Itoa(e.Seq)),
				Leaf("event-type", strconv.FormatUint(uint64(e.Type), 10)),
			)
			if e.PCR >= 0 {
				n.Add(Leaf("pcr-index", strconv.Itoa(e.PCR)))
			}
			byAlg := map[alg.ID][][]byte{}
			var algs []alg.ID
			for _, d := range e.Digests {
				if _, ok := byAlg[d.Alg]; !ok {
					algs = append(algs, d.Alg)
				}
				byAlg[d.Alg] = append(byAlg[d.Alg], d.Value)
			}
			sort.Slice(algs, func(i, j int) bool { return algs[i] < algs[j] })
			for _, a := range algs {
				if hashIdentity(a) == "" {
					continue
				}
				dl := El("digest-list", identity("hash-algo", "taa", NSTAA, hashIdentity(a)))
				for _, v := range byAlg[a] {
					dl.Add(Leaf("digest", b64(v)))
				}
				n.Add(dl)
			}
			n.Add(Leaf("event-size", strconv.Itoa(len(e.Data))), Leaf("event-data", b64(e.Data)))
			c.Add(n)
		}
		return c
	default:
		list, entry := "ima-event-logs", "ima-event-entry"
		if nl.Type == attester.LogNetequip {
			list, entry = "boot-event-logs", "boot-event-entry"
		}
		c := El(list)
		bank := nl.Log.Banks[0]
		for i := range nl.Log.Events {
			e := &nl.Log.Events[i]
			n := El(entry, Leaf("event-number", strconv.Itoa(e.Seq)))
			if e.IMA != nil {
				n.Add(Leaf("ima-template", e.IMA.Template), Leaf("filename-hint", e.IMA.FileName),
					Leaf("filedata-hash", b64(e.IMA.FileHash)), Leaf("filedata-hash-algorithm", e.IMA.FileHashAlgName))
			}
			n.Add(Leaf("template-hash-algorithm", bank.String()), Leaf("template-hash", b64(e.Digest(bank))),
				Leaf("pcr-index", strconv.Itoa(e.PCR)))
			if e.IMA != nil && len(e.IMA.Sig) > 0 {
				n.Add(Leaf("signature", b64(e.IMA.Sig)))
			}
			c.Add(n)
		}
		return c
	}
}
