// Package restconf is the collector's RESTCONF client (RFC 8040) for RIV
// agents: HTTPS with TLS 1.3, the device authenticated by its IDevID as
// the server certificate (the caller's tls.Config checks it) and the
// collector by its client certificate, data and operations in JSON (RFC
// 7951). It gives the verifier the same evidence as the NETCONF client.
//
// The replies are decoded by the NETCONF client's decoders: a YANG
// instance in RFC 7951 JSON is transcoded, token by token, into its RFC
// 7950 XML encoding (members become elements, arrays repeated elements,
// the module prefixes of names dropped as the decoders match local
// names). One set of decoders checks what a device sends, whatever the
// encoding: every bound, base64 value and digest size the NETCONF path
// enforces holds here.
package restconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

const (
	mediaJSON = "application/yang-data+json"
	modTPM    = "ietf-tpm-remote-attestation"
)

// maxReply bounds one reply body (the NETCONF client's bound).
const maxReply = 256 << 20

// Client is a RESTCONF client for one agent. It keeps its connection
// between requests (HTTP keep-alive, HTTP/2 when the agent offers it).
type Client struct {
	root string // the RESTCONF root URL, as host-meta gives it
	hc   *http.Client
	tr   *http.Transport
	// PeerCerts are the TLS server certificates of the first request: the
	// verifier checks the IDevID is the device's.
	PeerCerts []*x509.Certificate
	scope     evidence.Scope
}

// Dialer dials agents.
type Dialer struct {
	// Timeout bounds each request (default 60 s: a TPM quote takes up to
	// a second, a long log page some more).
	Timeout time.Duration
	// StageTimeout bounds each stage of reaching the device (TCP, the TLS
	// handshake); default netconf.DefaultStageTimeout, as over NETCONF.
	StageTimeout time.Duration
}

// Dial connects to the agent at base ("https://HOST:PORT"), finds its
// RESTCONF root through /.well-known/host-meta (RFC 8040 §3.1) and returns
// a client. cfg carries the client certificate and the check of the
// server's; TLS 1.3 is required.
func (d Dialer) Dial(ctx context.Context, base string, cfg *tls.Config) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("restconf: %q is not an https://HOST:PORT URL", base)
	}
	if d.Timeout == 0 {
		d.Timeout = 60 * time.Second
	}
	if d.StageTimeout == 0 {
		d.StageTimeout = netconf.DefaultStageTimeout
	}
	cfg = cfg.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.MinVersion = tls.VersionTLS13
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: d.StageTimeout}).DialContext,
		TLSHandshakeTimeout: d.StageTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     10 * time.Minute,
		Proxy:               nil, // a device is reached directly, never through an environment's proxy
	}
	c := &Client{hc: &http.Client{Transport: tr, Timeout: d.Timeout, CheckRedirect: noRedirect}, tr: tr}
	c.root = strings.TrimRight(u.Scheme+"://"+u.Host, "/")
	resp, body, err := c.send(ctx, http.MethodGet, c.root+"/.well-known/host-meta", "application/xrd+xml", nil)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	if resp.TLS != nil {
		c.PeerCerts = resp.TLS.PeerCertificates
	}
	root, err := restconfRoot(body)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	c.root += root
	return c, nil
}

// noRedirect refuses redirects: a device answers itself, and following
// one would send the client certificate's session elsewhere.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// restconfRoot reads the restconf link of a host-meta document (RFC 6415
// XRD): a path on the same host.
func restconfRoot(body []byte) (string, error) {
	var xrd struct {
		Links []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"Link"`
	}
	if err := xml.Unmarshal(body, &xrd); err != nil {
		return "", fmt.Errorf("restconf: host-meta: %w", err)
	}
	for _, l := range xrd.Links {
		if l.Rel == "restconf" {
			if !strings.HasPrefix(l.Href, "/") || strings.HasPrefix(l.Href, "//") {
				return "", fmt.Errorf("restconf: host-meta names the root %q, not a path on the device", l.Href)
			}
			return strings.TrimRight(l.Href, "/"), nil
		}
	}
	return "", errors.New("restconf: host-meta has no restconf link (not a RESTCONF server)")
}

// Close closes the kept connections.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// Scoped returns a client on the same connection whose challenges ask only
// for a quote by sc.CertificateName and whose log retrievals select only
// sc.TPM's logs.
func (c *Client) Scoped(sc evidence.Scope) evidence.Session {
	n := *c
	n.scope = sc
	return &n
}

// Error is an HTTP error status with the RESTCONF errors the body carries
// (RFC 8040 §7.1).
type Error struct {
	Status  int
	Tag     string // the first error's error-tag ("" when the body had none)
	Message string
}

func (e *Error) Error() string {
	if e.Tag == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d: %s: %s", e.Status, e.Tag, e.Message)
}

// Is makes an error status evidence.ErrRefused, and one with error-tag
// resource-denied evidence.ErrBusy too.
func (e *Error) Is(target error) bool {
	switch target {
	case evidence.ErrRefused:
		return true
	case evidence.ErrBusy:
		return e.Tag == "resource-denied"
	}
	return false
}

// send makes one request and reads the whole (bounded) body; an error
// status is an *Error.
func (c *Client) send(ctx context.Context, method, u, accept string, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", mediaJSON)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("restconf %s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, nil, fmt.Errorf("restconf %s %s: reading the reply: %w", method, req.URL.Path, err)
	}
	if len(b) > maxReply {
		return nil, nil, fmt.Errorf("restconf %s %s: reply larger than %d bytes", method, req.URL.Path, maxReply)
	}
	if resp.StatusCode >= 300 {
		return resp, nil, errorOf(resp.StatusCode, b)
	}
	return resp, b, nil
}

// errorOf reads the ietf-restconf:errors of an error reply.
func errorOf(status int, body []byte) error {
	var e struct {
		Errors struct {
			Error []struct {
				Tag     string `json:"error-tag"`
				Message string `json:"error-message"`
			} `json:"error"`
		} `json:"ietf-restconf:errors"`
	}
	out := &Error{Status: status, Message: http.StatusText(status)}
	if json.Unmarshal(body, &e) == nil && len(e.Errors.Error) > 0 {
		out.Tag, out.Message = e.Errors.Error[0].Tag, e.Errors.Error[0].Message
	}
	return out
}

// get reads a data resource (path below {+restconf}/data, query
// included) and returns it transcoded to XML.
func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	_, body, err := c.send(ctx, http.MethodGet, c.root+"/data/"+path, mediaJSON, nil)
	if err != nil {
		return nil, err
	}
	return ToXML(body, false)
}

// invoke runs an operation of the attestation module with a JSON input
// and returns its output's content transcoded to XML.
func (c *Client) invoke(ctx context.Context, rpc string, input any) ([]byte, error) {
	in, err := json.Marshal(map[string]any{modTPM + ":input": input})
	if err != nil {
		return nil, err
	}
	_, body, err := c.send(ctx, http.MethodPost, c.root+"/operations/"+modTPM+":"+rpc, mediaJSON, in)
	if err != nil {
		return nil, err
	}
	return ToXML(body, true)
}

// Support fetches rats-support-structures, the keystore and the YANG
// library's modules, and the inventory when the device implements it.
func (c *Client) Support(ctx context.Context) (*evidence.Support, error) {
	netconf.Progress(ctx, "identity and capabilities")
	var data bytes.Buffer
	data.WriteString("<data>")
	for _, p := range []string{
		modTPM + ":rats-support-structures",
		"ietf-keystore:keystore",
		"ietf-yang-library:yang-library?fields=" + url.QueryEscape("module-set/module(name;feature)"),
	} {
		x, err := c.get(ctx, p)
		if err != nil {
			return nil, err
		}
		data.Write(x)
	}
	data.WriteString("</data>")
	out, hasInventory, err := netconf.DecodeSupportInventory(data.Bytes())
	if err != nil || !hasInventory {
		return out, err
	}
	x, err := c.get(ctx, "riv-software-inventory:software-inventory?fields="+url.QueryEscape("component(tag-id;rim(digest;media-type;file-name;size))"))
	if err == nil {
		out.Inventory, err = netconf.DecodeInventory(append(append([]byte("<data>"), x...), "</data>"...))
	}
	var re *Error
	if errors.As(err, &re) {
		// An inventory the device will not give (NACM, say) leaves the
		// appraisal to the RIMs the verifier has.
		out.Inventory, out.InventoryErr, err = nil, err, nil
	}
	return out, err
}

// RIMs fetches the RIMs of the components tagIDs, one resource each.
func (c *Client) RIMs(ctx context.Context, tagIDs []string) ([]evidence.RIMFile, error) {
	if len(tagIDs) == 0 {
		return nil, nil
	}
	netconf.Progress(ctx, "in-band RIMs")
	var data bytes.Buffer
	data.WriteString("<data><software-inventory>")
	for _, id := range tagIDs {
		x, err := c.get(ctx, "riv-software-inventory:software-inventory/component="+url.PathEscape(id)+"/rim")
		var re *Error
		if errors.As(err, &re) && re.Status == http.StatusNotFound {
			continue // a component without RIMs, or gone: as an empty NETCONF filter result
		}
		if err != nil {
			return nil, err
		}
		// The RIMs decoded are bounded (64 MiB); their text is bounded
		// before it is all held.
		if data.Len()+len(x) > maxRIMText {
			return nil, fmt.Errorf("restconf: the RIMs of %d components exceed %d bytes of reply", len(tagIDs), maxRIMText)
		}
		data.WriteString("<component><tag-id>")
		xml.EscapeText(&data, []byte(id))
		data.WriteString("</tag-id>")
		data.Write(x)
		data.WriteString("</component>")
	}
	data.WriteString("</software-inventory></data>")
	return netconf.DecodeRIMs(data.Bytes())
}

// maxRIMText bounds the replies of one RIMs call: 64 MiB of RIMs in
// base64, with room for the markup.
const maxRIMText = 96 << 20

// challengeInput is the input of tpm20-challenge-response-attestation.
func (c *Client) challengeInput(nonce []byte, sel []pcr.Selection) any {
	type selection struct {
		Alg  string `json:"tpm20-hash-algo"`
		PCRs []int  `json:"pcr-index"`
	}
	ch := struct {
		Nonce string      `json:"nonce-value"`
		Sel   []selection `json:"tpm20-pcr-selection"`
		Certs []string    `json:"certificate-name,omitempty"`
	}{Nonce: base64.StdEncoding.EncodeToString(nonce)}
	for _, s := range sel {
		ch.Sel = append(ch.Sel, selection{Alg: "ietf-tcg-algs:" + netconf.IdentityOf(s.Bank), PCRs: s.PCRs})
	}
	if c.scope.CertificateName != "" {
		ch.Certs = []string{c.scope.CertificateName}
	}
	return map[string]any{"tpm20-attestation-challenge": ch}
}

// Challenge runs tpm20-challenge-response-attestation.
func (c *Client) Challenge(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]evidence.Quote, error) {
	x, err := c.invoke(ctx, "tpm20-challenge-response-attestation", c.challengeInput(nonce, sel))
	if err != nil {
		return nil, err
	}
	return netconf.DecodeChallenge(x)
}

// Collect runs the challenge, then each log retrieval once the quote is
// in: every log is read after the quote was taken, so entries measured
// in between are in the log, never missing from it.
func (c *Client) Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, logs []evidence.LogRequest) ([]evidence.Quote, []evidence.LogResult, error) {
	netconf.Progress(ctx, "quote and logs")
	quotes, err := c.Challenge(ctx, nonce, sel)
	if err != nil {
		return nil, nil, err
	}
	out := make([]evidence.LogResult, len(logs))
	for k, l := range logs {
		// A log that fails is that log's error, as over NETCONF: the
		// verifier tells a refusal (a claim) from a failure to reach.
		r := &out[k]
		r.Log, r.UpTime, r.Err = c.Logs(ctx, l.Type, l.After)
	}
	return quotes, out, nil
}

// maxLogPages bounds the pages of one Logs call, as the NETCONF client's.
const maxLogPages = 256

// Logs runs log-retrieval for logType from after event number after (nil
// for the whole log), following pages of netconf.LogPage entries.
func (c *Client) Logs(ctx context.Context, logType string, after *uint64) (*eventlog.Log, uint32, error) {
	return netconf.Pages(logType, after, maxLogPages, func(after *uint64) (*eventlog.Log, uint32, error) {
		sel := map[string]any{"log-entry-quantity": netconf.LogPage}
		if c.scope.TPM != "" {
			sel["name"] = []string{c.scope.TPM}
		}
		if after != nil {
			sel["last-index-number"] = strconv.FormatUint(*after, 10) // uint64: a JSON string (RFC 7951 §6.1)
		}
		x, err := c.invoke(ctx, "log-retrieval", map[string]any{"log-type": modTPM + ":" + logType, "log-selector": []any{sel}})
		if err != nil {
			return nil, 0, err
		}
		return netconf.DecodeLogs(x, logType)
	})
}
