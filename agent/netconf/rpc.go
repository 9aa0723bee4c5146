package netconf

import (
	"bytes"
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
)

// handle answers one <rpc>; done means the session ends after the reply.
func (s *Server) handle(ctx context.Context, ss *session, msg []byte) (reply []byte, done bool) {
	d := xml.NewDecoder(bytes.NewReader(msg))
	d.Strict = true
	var rpc xml.StartElement
	for {
		tok, err := d.Token()
		if err != nil {
			return rpcErrorReply("", &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: "no <rpc> element: " + err.Error()}), true
		}
		if se, ok := tok.(xml.StartElement); ok {
			rpc = se
			break
		}
	}
	if rpc.Name.Local != "rpc" || rpc.Name.Space != NSBase {
		return rpcErrorReply("", &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: "expected <rpc> in the base namespace"}), true
	}
	attrs := rpc.Attr
	var mid string
	for _, a := range attrs {
		if a.Name.Local == "message-id" && a.Name.Space == "" {
			mid = a.Value
		}
	}
	if mid == "" {
		return rpcErrorReplyAttrs(attrs, &attester.RPCError{Type: "rpc", Tag: "missing-attribute", Message: "message-id is required"}), false
	}
	var op xml.StartElement
	for {
		tok, err := d.Token()
		if err != nil {
			return rpcErrorReplyAttrs(attrs, &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: "no operation: " + err.Error()}), false
		}
		if se, ok := tok.(xml.StartElement); ok {
			op = se
			break
		}
	}
	name := op.Name.Local
	if !s.nacm().allowed(ss.user, op.Name.Space, name) {
		s.cfg.Logger.Warn("access denied", "session", ss.id, "user", ss.user, "rpc", name)
		return rpcErrorReplyAttrs(attrs, &attester.RPCError{Type: "protocol", Tag: "access-denied", Message: "access to " + name + " denied by NACM"}), false
	}
	var body string
	var rerr error
	switch {
	case op.Name.Space == NSBase && name == "get":
		body, rerr = s.opGet(d, op, false)
	case op.Name.Space == NSBase && name == "get-config":
		body, rerr = s.opGet(d, op, true)
	case op.Name.Space == NSNMDA && name == "get-data":
		body, rerr = s.opGetData(d, op)
	case op.Name.Space == NSMonitoring && name == "get-schema":
		body, rerr = s.opGetSchema(d, op)
	case op.Name.Space == NSBase && name == "close-session":
		return okReply(attrs), true
	case op.Name.Space == NSBase && name == "kill-session":
		var k struct {
			ID uint32 `xml:"session-id"`
		}
		if err := d.DecodeElement(&k, &op); err != nil || k.ID == 0 {
			rerr = &attester.RPCError{Type: "protocol", Tag: "missing-element", Message: "session-id is required", Path: "/nc:rpc/nc:kill-session/nc:session-id"}
		} else if k.ID == ss.id {
			rerr = &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: "a session cannot kill itself"}
		} else if !s.Kill(k.ID) {
			rerr = &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("no session %d", k.ID)}
		}
	case op.Name.Space == NSTPM && name == "tpm20-challenge-response-attestation":
		body, rerr = s.opChallenge(ctx, d, op)
	case op.Name.Space == NSTPM && name == "log-retrieval":
		body, rerr = s.opLogRetrieval(ctx, d, op)
	default:
		rerr = &attester.RPCError{Type: "protocol", Tag: "operation-not-supported", Message: fmt.Sprintf("operation %s (%s) is not supported", name, op.Name.Space)}
	}
	if rerr != nil {
		re, ok := rerr.(*attester.RPCError)
		if !ok {
			re = &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: rerr.Error()}
		}
		s.cfg.Logger.Info("rpc error", "session", ss.id, "rpc", name, "tag", re.Tag, "message", re.Message)
		return rpcErrorReplyAttrs(attrs, re), false
	}
	if body == "" {
		return okReply(attrs), false
	}
	return replyWith(attrs, body), false
}

func replyHead(attrs []xml.Attr) string {
	var b strings.Builder
	b.WriteString(`<rpc-reply xmlns="` + NSBase + `"`)
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(a.Name.Local)
		b.WriteString(`="`)
		xml.EscapeText(b2w{&b}, []byte(a.Value))
		b.WriteByte('"')
	}
	b.WriteByte('>')
	return b.String()
}

func replyWith(attrs []xml.Attr, body string) []byte {
	return []byte(replyHead(attrs) + body + "</rpc-reply>")
}

func okReply(attrs []xml.Attr) []byte { return replyWith(attrs, "<ok/>") }

func rpcErrorReply(mid string, e *attester.RPCError) []byte {
	var attrs []xml.Attr
	if mid != "" {
		attrs = []xml.Attr{{Name: xml.Name{Local: "message-id"}, Value: mid}}
	}
	return rpcErrorReplyAttrs(attrs, e)
}

// rpcErrorReplyAttrs renders an rpc-error (RFC 6241 §4.3).
func rpcErrorReplyAttrs(attrs []xml.Attr, e *attester.RPCError) []byte {
	n := El("rpc-error", Leaf("error-type", e.Type), Leaf("error-tag", e.Tag), Leaf("error-severity", "error"))
	if e.AppTag != "" {
		n.Add(Leaf("error-app-tag", e.AppTag))
	}
	if e.Path != "" {
		p := Leaf("error-path", e.Path)
		p.Attrs = []xml.Attr{xmlns("tpm", NSTPM), xmlns("nc", NSBase)}
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
	return replyWith(attrs, n.String())
}

// badElement is the error-info of an error about element name.
func badElement(name string) []attester.ErrorInfo {
	return []attester.ErrorInfo{{Name: "bad-element", Value: name}}
}

// readFilter finds a <filter> (or NMDA <subtree-filter>) child of op and
// parses it; nil means no filter.
func readFilter(d *xml.Decoder, op xml.StartElement, filterName string) ([]*filterNode, map[string]string, error) {
	var f []*filterNode
	leaves := map[string]string{}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == filterName {
				for _, a := range t.Attr {
					if a.Name.Local == "type" && a.Value != "subtree" {
						return nil, nil, &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: "only subtree filters are supported"}
					}
				}
				if f, err = parseFilter(d, t); err != nil {
					return nil, nil, err
				}
				continue
			}
			var v struct {
				Inner string `xml:",innerxml"`
			}
			if err := d.DecodeElement(&v, &t); err != nil {
				return nil, nil, err
			}
			val := strings.TrimSpace(stripTags(v.Inner))
			if val == "" {
				// <source><running/></source>: the value is an element name.
				val = firstElement(v.Inner)
			}
			leaves[t.Name.Local] = val
		case xml.EndElement:
			return f, leaves, nil
		}
	}
}

// firstElement returns the local name of the first element in s.
func firstElement(s string) string {
	i := strings.IndexByte(s, '<')
	if i < 0 {
		return ""
	}
	s = s[i+1:]
	end := strings.IndexAny(s, " />")
	if end < 0 {
		return ""
	}
	name := s[:end]
	if j := strings.IndexByte(name, ':'); j >= 0 {
		name = name[j+1:]
	}
	return name
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (s *Server) opGet(d *xml.Decoder, op xml.StartElement, config bool) (string, error) {
	f, leaves, err := readFilter(d, op, "filter")
	if err != nil {
		return "", err
	}
	if config {
		if src := leaves["source"]; src != "running" && src != "" {
			return "", &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: "only the running datastore exists"}
		}
	}
	tree := s.stateTree()
	if config {
		tree = configOnly(tree)
	} else {
		tree = append(tree, s.yangLibrary(), s.monitoring())
	}
	var b strings.Builder
	b.WriteString("<data>")
	for _, n := range Filter(tree, f) {
		n.encode(&b, NSBase)
	}
	b.WriteString("</data>")
	return b.String(), nil
}

func (s *Server) opGetData(d *xml.Decoder, op xml.StartElement) (string, error) {
	f, leaves, err := readFilter(d, op, "subtree-filter")
	if err != nil {
		return "", err
	}
	ds := leaves["datastore"]
	var tree []*Node
	switch {
	case strings.HasSuffix(ds, ":operational"):
		tree = append(s.stateTree(), s.yangLibrary(), s.monitoring())
	case strings.HasSuffix(ds, ":running"), strings.HasSuffix(ds, ":intended"):
		tree = configOnly(s.stateTree())
	default:
		return "", &attester.RPCError{Type: "protocol", Tag: "invalid-value", Message: fmt.Sprintf("datastore %q is not supported", ds), Path: "/nc:rpc/ncds:get-data/ncds:datastore"}
	}
	var b strings.Builder
	b.WriteString(`<data xmlns="` + NSNMDA + `">`)
	for _, n := range Filter(tree, f) {
		n.encode(&b, NSNMDA)
	}
	b.WriteString("</data>")
	return b.String(), nil
}

func (s *Server) opGetSchema(d *xml.Decoder, op xml.StartElement) (string, error) {
	var g struct {
		Identifier string `xml:"identifier"`
		Version    string `xml:"version"`
		Format     string `xml:"format"`
	}
	if err := d.DecodeElement(&g, &op); err != nil {
		return "", err
	}
	const path = "/nc:rpc/ncm:get-schema"
	id, ver := strings.TrimSpace(g.Identifier), strings.TrimSpace(g.Version)
	if id == "" {
		return "", &attester.RPCError{Type: "protocol", Tag: "missing-element", Message: "identifier is required", Path: path + "/ncm:identifier", Info: badElement("identifier")}
	}
	// RFC 6022 §3.1: only YANG is served (yin is not).
	if f := strings.TrimSpace(g.Format); f != "" && localName(f) != "yang" {
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: "only the yang format is served", Path: path + "/ncm:format"}
	}
	m, ok := libraryModule(id, ver)
	if !ok {
		msg := "no such schema: " + id
		if ver != "" {
			msg += "@" + ver
		}
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Message: msg, Path: path + "/ncm:identifier"}
	}
	var b strings.Builder
	b.WriteString(`<data xmlns="` + NSMonitoring + `">`)
	xml.EscapeText(b2w{&b}, []byte(m.Text))
	b.WriteString("</data>")
	return b.String(), nil
}

// configOnly keeps the config true nodes of the state tree.
func configOnly(tree []*Node) []*Node {
	var out []*Node
	for _, n := range tree {
		if c := prune(n, nil); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// stateOnly names the config false nodes of RFC 9684 and ietf-keystore.
var stateOnly = map[string]bool{
	"hardware-based": true, "path": true, "manufacturer": true, "status": true, "compute-node": true,
	"tpm20-pcr-bank": true, "public-key": true, "public-key-format": true, "hidden-private-key": true,
}

func prune(n *Node, path []string) *Node {
	if stateOnly[n.Name] {
		return nil
	}
	c := &Node{Name: n.Name, NS: n.NS, Text: n.Text, Attrs: n.Attrs}
	for _, ch := range n.Children {
		if p := prune(ch, append(path, n.Name)); p != nil {
			c.Children = append(c.Children, p)
		}
	}
	return c
}

// opChallenge handles tpm20-challenge-response-attestation.
func (s *Server) opChallenge(ctx context.Context, d *xml.Decoder, op xml.StartElement) (string, error) {
	var in struct {
		Challenge struct {
			Nonce     string `xml:"nonce-value"`
			Selection []struct {
				HashAlgo string   `xml:"tpm20-hash-algo"`
				PCRs     []string `xml:"pcr-index"`
			} `xml:"tpm20-pcr-selection"`
			Certs []string `xml:"certificate-name"`
		} `xml:"tpm20-attestation-challenge"`
	}
	if err := d.DecodeElement(&in, &op); err != nil {
		return "", &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: err.Error()}
	}
	const base = "/tpm:tpm20-challenge-response-attestation/tpm:tpm20-attestation-challenge"
	nonce, err := base64.StdEncoding.DecodeString(strings.TrimSpace(in.Challenge.Nonce))
	if err != nil {
		return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:nonce-value", Message: "nonce-value is not base64"}
	}
	ch := attester.Challenge{Nonce: nonce, CertificateNames: in.Challenge.Certs}
	for _, sel := range in.Challenge.Selection {
		bank := alg.SHA256 // the module's stated default
		if v := strings.TrimSpace(sel.HashAlgo); v != "" {
			_, local, _ := strings.Cut(v, ":")
			if !strings.Contains(v, ":") {
				local = v
			}
			b, ok := parseHashIdentity(local)
			if !ok {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:tpm20-pcr-selection/tpm:tpm20-hash-algo", Message: "This platform does not support tpm20-hash-algo"}
			}
			bank = b
		}
		var mask uint32
		for _, p := range sel.PCRs {
			i, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || i < 0 || i > 31 {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:tpm20-pcr-selection/tpm:pcr-index", Message: fmt.Sprintf("pcr-index %q is not 0-31", p)}
			}
			mask |= 1 << uint(i)
		}
		ch.Selection = append(ch.Selection, pcr.FromMask(bank, mask))
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

// opLogRetrieval handles log-retrieval.
func (s *Server) opLogRetrieval(ctx context.Context, d *xml.Decoder, op xml.StartElement) (string, error) {
	var in struct {
		LogType   string `xml:"log-type"`
		Selectors []struct {
			Names     []string `xml:"name"`
			LastEntry *string  `xml:"last-entry-value"`
			LastIndex *string  `xml:"last-index-number"`
			Timestamp *string  `xml:"timestamp"`
			Quantity  *string  `xml:"log-entry-quantity"`
		} `xml:"log-selector"`
	}
	if err := d.DecodeElement(&in, &op); err != nil {
		return "", &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: err.Error()}
	}
	const base = "/tpm:log-retrieval"
	lt := strings.TrimSpace(in.LogType)
	if i := strings.IndexByte(lt, ':'); i >= 0 {
		lt = lt[i+1:]
	}
	var sels []attester.LogSelector
	for _, sl := range in.Selectors {
		sel := attester.LogSelector{Names: sl.Names}
		set := 0
		if sl.LastEntry != nil {
			v, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*sl.LastEntry))
			if err != nil {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:log-selector/tpm:last-entry-value", Message: "last-entry-value is not base64"}
			}
			sel.LastEntryValue = v
			set++
		}
		if sl.LastIndex != nil {
			v, err := strconv.ParseUint(strings.TrimSpace(*sl.LastIndex), 10, 64)
			if err != nil {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:log-selector/tpm:last-index-number", Message: "last-index-number is not a uint64"}
			}
			sel.LastIndexNumber = &v
			set++
		}
		if sl.Timestamp != nil {
			v, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(*sl.Timestamp))
			if err != nil {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:log-selector/tpm:timestamp", Message: "timestamp is not a yang:date-and-time"}
			}
			sel.Timestamp = &v
			set++
		}
		if set > 1 {
			return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:log-selector", Message: "at most one of last-entry-value, last-index-number and timestamp (choice index-type)"}
		}
		if sl.Quantity != nil {
			v, err := strconv.ParseUint(strings.TrimSpace(*sl.Quantity), 10, 16)
			if err != nil {
				return "", &attester.RPCError{Type: "application", Tag: "invalid-value", Path: base + "/tpm:log-selector/tpm:log-entry-quantity", Message: "log-entry-quantity is not a uint16"}
			}
			q := uint16(v)
			sel.Quantity = &q
		}
		sels = append(sels, sel)
	}
	nodes, err := s.cfg.Attester.RetrieveLogs(ctx, attester.LogType(lt), sels)
	if err != nil {
		return "", err
	}
	logs := El("system-event-logs").InNS(NSTPM)
	for _, nl := range nodes {
		nd := El("node-data", Leaf("name", nl.Name), Leaf("up-time", strconv.FormatUint(uint64(nl.UpTime), 10)))
		nd.Add(El("log-result", logResult(nl)))
		logs.Add(nd)
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
