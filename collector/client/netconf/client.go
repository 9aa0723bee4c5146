// Package netconf is the collector's NETCONF client for RIV agents: it
// dials over SSH or TLS, authenticates the device by its IDevID, and
// speaks the RFC 9684 RPCs, decoding replies into evidence types.
package netconf

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	nc "github.com/nemith/netconf"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
)

const (
	nsTPM = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"
	nsTAA = "urn:ietf:params:xml:ns:yang:ietf-tcg-algs"
	nsKS  = "urn:ietf:params:xml:ns:yang:ietf-keystore"
	// nsYangLib is RFC 8525's ietf-yang-library.
	nsYangLib = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
	// nsInventory is RIV's software inventory (yang/riv-software-inventory).
	nsInventory = "urn:openriv:params:xml:ns:yang:riv-software-inventory"
)

// The evidence types the client returns are the transport-neutral ones
// of collector/evidence, which the verifier speaks.
type (
	Scope       = evidence.Scope
	Certificate = evidence.Certificate
	TPM         = evidence.TPM
	Support     = evidence.Support
	Component   = evidence.Component
	RIMRef      = evidence.RIMRef
	RIMFile     = evidence.RIMFile
	Quote       = evidence.Quote
	LogRequest  = evidence.LogRequest
	LogResult   = evidence.LogResult
)

// Client is a NETCONF session to one agent.
type Client struct {
	s *session
	// HostKey is the SSH host key the device presented (SSH only); the
	// verifier checks it is the IDevID certificate's key.
	HostKey crypto.PublicKey
	// PeerCerts are the TLS server certificates (TLS only).
	PeerCerts []*x509.Certificate
	// scope narrows challenges and log retrievals to one TPM of a device
	// with several (Scoped).
	scope Scope
}

// Scoped returns a client on the same session whose challenges ask only
// for a quote by sc.CertificateName and whose log retrievals select only
// sc.TPM's logs.
func (c *Client) Scoped(sc Scope) evidence.Session {
	n := *c
	n.scope = sc
	return &n
}

// The client is a verifier session of every kind.
var (
	_ evidence.Session   = (*Client)(nil)
	_ evidence.Scoper    = (*Client)(nil)
	_ evidence.RIMSource = (*Client)(nil)
)

// DialSSH opens NETCONF over SSH with the default stage deadlines.
func DialSSH(ctx context.Context, addr, user string, key crypto.Signer) (*Client, error) {
	return Dialer{}.DialSSH(ctx, addr, user, key)
}

// DialTLS opens NETCONF over TLS with the default stage deadlines.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	return Dialer{}.DialTLS(ctx, addr, cfg)
}

// DialSSH opens NETCONF over SSH. The host key is recorded, not trusted:
// the caller binds it to the device's IDevID certificate.
func (d Dialer) DialSSH(ctx context.Context, addr, user string, key crypto.Signer) (*Client, error) {
	signer, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, err
	}
	c := &Client{}
	cfg := &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			ck, ok := k.(ssh.CryptoPublicKey)
			if !ok {
				return errors.New("host key is not a crypto key")
			}
			c.HostKey = ck.CryptoPublicKey()
			return nil
		},
	}
	if err := d.dialSSH(ctx, c, addr, cfg); err != nil {
		return nil, fmt.Errorf("netconf ssh %s: %w", addr, err)
	}
	return c, nil
}

// dialSSH opens the netconf subsystem (RFC 6242) and the session on it.
func (d Dialer) dialSSH(ctx context.Context, c *Client, addr string, cfg *ssh.ClientConfig) error {
	conn, err := d.dial(ctx, addr)
	if err != nil {
		return err
	}
	var client *ssh.Client
	var stdin io.WriteCloser
	var stdout io.Reader
	var sess *ssh.Session
	err = d.stage(ctx, "SSH handshake", func(ctx context.Context) error {
		// x/crypto/ssh takes no context: closing the connection ends a
		// handshake or request that outlives ctx.
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		if err != nil {
			return err
		}
		client = ssh.NewClient(sc, chans, reqs)
		if sess, err = client.NewSession(); err != nil {
			return fmt.Errorf("ssh session: %w", err)
		}
		var err1, err2 error
		stdin, err1 = sess.StdinPipe()
		stdout, err2 = sess.StdoutPipe()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if err := sess.RequestSubsystem("netconf"); err != nil {
			return fmt.Errorf("netconf subsystem: %w", err)
		}
		if !stop() {
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		conn.Close()
		return err
	}
	return d.stage(ctx, "NETCONF hello", func(ctx context.Context) (err error) {
		// Closing the connection ends the channel too; closing stdin
		// first would race with a write the stage deadline is aborting
		// (x/crypto/ssh's CloseWrite and Write share the channel's state).
		c.s, err = openSession(ctx, stdout, stdin, func() error {
			err := client.Close()
			sess.Close()
			return err
		})
		return err
	})
}

// DialTLS opens NETCONF over TLS (RFC 7589); cfg must hold the client
// certificate and the manufacturer anchors as RootCAs.
func (d Dialer) DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS13 {
		cfg.MinVersion = tls.VersionTLS13
	}
	raw, err := d.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("netconf tls %s: %w", addr, err)
	}
	conn := tls.Client(raw, cfg)
	if err := d.stage(ctx, "TLS handshake", conn.HandshakeContext); err != nil {
		raw.Close()
		return nil, fmt.Errorf("netconf tls %s: %w", addr, err)
	}
	c := &Client{PeerCerts: conn.ConnectionState().PeerCertificates}
	err = d.stage(ctx, "NETCONF hello", func(ctx context.Context) (err error) {
		c.s, err = openSession(ctx, conn, conn, conn.Close)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netconf tls %s: %w", addr, err)
	}
	return c, nil
}

// Open runs NETCONF over a stream the caller has already authenticated
// and trusts to be the device's: an in-process transport (the fleet
// simulator's loopback, benchmarks). Nothing here authenticates the peer;
// the caller passes the verifier the key it bound the stream to.
func Open(ctx context.Context, rw io.ReadWriteCloser) (*Client, error) {
	s, err := openSession(ctx, rw, rw, rw.Close)
	if err != nil {
		return nil, fmt.Errorf("netconf: %w", err)
	}
	return &Client{s: s}, nil
}

// Close ends the session.
func (c *Client) Close() error { return c.s.close() }

// do sends an RPC whose operation is body (trusted XML built here) and
// hands the reply's inner XML to use, valid until use returns.
func (c *Client) do(ctx context.Context, body string, use func([]byte) error) error {
	return c.s.do(ctx, body, use)
}

// RPCError is an rpc-error reply.
type RPCError struct {
	Err    error
	Errors nc.RPCErrors
}

// Is makes an rpc-error evidence.ErrRefused, and one with error-tag
// resource-denied evidence.ErrBusy too.
func (e *RPCError) Is(target error) bool {
	switch target {
	case evidence.ErrRefused:
		return true
	case evidence.ErrBusy:
		return len(e.Errors) > 0 && string(e.Errors[0].Tag) == "resource-denied"
	}
	return false
}

func (e *RPCError) Error() string {
	if len(e.Errors) > 0 {
		return fmt.Sprintf("rpc-error %s: %s", e.Errors[0].Tag, e.Errors[0].Message)
	}
	return e.Err.Error()
}

// Support fetches rats-support-structures, the keystore entries they
// reference and the attestation module's features in one <get>.
func (c *Client) Support(ctx context.Context) (*Support, error) {
	Progress(ctx, "identity and capabilities")
	var out *Support
	var hasInventory bool
	err := c.do(ctx, supportRPC, func(body []byte) (err error) {
		out, hasInventory, err = decodeSupport(body)
		return err
	})
	if err != nil || !hasInventory {
		return out, err
	}
	// Only a device that implements the inventory is asked for it: some
	// NETCONF servers answer a filter in a namespace they do not know
	// with an rpc-error rather than nothing.
	err = c.do(ctx, inventoryRPC, func(body []byte) (err error) {
		out.Inventory, err = DecodeInventory(body)
		return err
	})
	var re *RPCError
	if errors.As(err, &re) {
		// An inventory the device will not give (NACM, say) leaves the
		// appraisal to the RIMs the verifier has.
		out.Inventory, out.InventoryErr, err = nil, err, nil
	}
	return out, err
}

// supportRPC gets rats-support-structures, the keystore, and from the
// YANG library the attestation module's features and whether the device
// implements riv-software-inventory, in one <get>.
const supportRPC = `<get><filter type="subtree"><rats-support-structures xmlns="` + nsTPM + `"/><keystore xmlns="` + nsKS + `"/>` +
	`<yang-library xmlns="` + nsYangLib + `"><module-set><module><name>ietf-tpm-remote-attestation</name><feature/></module>` +
	`<module><name>riv-software-inventory</name></module></module-set></yang-library>` +
	`</filter></get>`

// inventoryRPC gets the inventory's summary: each component's tag-id and
// the digest, media type, name and size of its RIMs, not their content.
const inventoryRPC = `<get><filter type="subtree"><software-inventory xmlns="` + nsInventory + `"><component><tag-id/>` +
	`<rim><digest/><media-type/><file-name/><size/></rim></component></software-inventory></filter></get>`

// DecodeInventory decodes the reply to inventoryRPC (its inner body).
func DecodeInventory(body []byte) ([]Component, error) {
	var r struct {
		Components []xmlComponent `xml:"data>software-inventory>component"`
	}
	if err := xml.Unmarshal(wrap(body), &r); err != nil {
		return nil, fmt.Errorf("decode software-inventory: %w", err)
	}
	if len(r.Components) > maxComponents {
		return nil, fmt.Errorf("software-inventory: %d components, more than %d", len(r.Components), maxComponents)
	}
	out := []Component{}
	for _, c := range r.Components {
		comp := Component{TagID: strings.TrimSpace(c.TagID)}
		for _, rr := range c.RIMs {
			comp.RIMs = append(comp.RIMs, rr.ref())
		}
		out = append(out, comp)
	}
	return out, nil
}

// maxComponents bounds a device's inventory (the agent's own limit is
// 4096).
const maxComponents = 1 << 14

// DecodeSupport decodes the reply to supportRPC (a <get>'s inner body).
func DecodeSupport(body []byte) (*Support, error) {
	s, _, err := decodeSupport(body)
	return s, err
}

// DecodeSupportInventory is DecodeSupport, also reporting whether the
// device implements riv-software-inventory (the RESTCONF client decodes
// the same data).
func DecodeSupportInventory(body []byte) (*Support, bool, error) { return decodeSupport(body) }

// decodeSupport is DecodeSupport, also reporting whether the device
// implements riv-software-inventory.
func decodeSupport(body []byte) (*Support, bool, error) {
	hasInventory := false
	var r struct {
		RSS struct {
			TPMs []struct {
				Name  string `xml:"name"`
				Node  string `xml:"compute-node"`
				Certs []struct {
					Name string `xml:"name"`
					Ref  string `xml:"keystore-ref"`
					Type string `xml:"type"`
				} `xml:"certificates>certificate"`
			} `xml:"tpms>tpm"`
			Hashes []string `xml:"attester-supported-algos>tpm20-hash"`
		} `xml:"data>rats-support-structures"`
		Keys []struct {
			Name  string `xml:"name"`
			Certs []struct {
				Name string `xml:"name"`
				Data string `xml:"cert-data"`
			} `xml:"certificates>certificate"`
		} `xml:"data>keystore>asymmetric-keys>asymmetric-key"`
		Modules []struct {
			Name     string   `xml:"name"`
			Features []string `xml:"feature"`
		} `xml:"data>yang-library>module-set>module"`
	}
	if err := xml.Unmarshal(wrap(body), &r); err != nil {
		return nil, false, fmt.Errorf("decode rats-support-structures: %w", err)
	}
	out := &Support{}
	type tpmCert struct {
		Name, Ref, Type, TPM string
	}
	var certs []tpmCert
	for _, t := range r.RSS.TPMs {
		name := strings.TrimSpace(t.Name)
		out.TPMs = append(out.TPMs, TPM{Name: name, ComputeNode: strings.TrimSpace(t.Node)})
		for _, c := range t.Certs {
			certs = append(certs, tpmCert{Name: c.Name, Ref: c.Ref, Type: c.Type, TPM: name})
		}
	}
	for _, rc := range certs {
		for _, k := range r.Keys {
			if k.Name != rc.Ref {
				continue
			}
			for _, kc := range k.Certs {
				der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(kc.Data))
				if err != nil {
					return nil, false, fmt.Errorf("certificate %s: %w", rc.Name, err)
				}
				certs, err := identity.ParseCertsOnlyCMS(der)
				if err != nil || len(certs) == 0 {
					return nil, false, fmt.Errorf("certificate %s: %v", rc.Name, err)
				}
				out.Certificates = append(out.Certificates, Certificate{Name: rc.Name, Type: strings.TrimSpace(rc.Type), Cert: certs[0], TPM: rc.TPM})
			}
		}
	}
	for _, h := range r.RSS.Hashes {
		if b, ok := hashByIdentity(localName(h)); ok {
			out.Banks = append(out.Banks, b)
		}
	}
	for _, m := range r.Modules {
		if strings.TrimSpace(m.Name) == "riv-software-inventory" {
			hasInventory = true
		}
		if strings.TrimSpace(m.Name) != "ietf-tpm-remote-attestation" {
			continue
		}
		out.LogTypes = []string{}
		for _, f := range m.Features {
			switch f = strings.TrimSpace(f); f {
			case "bios", "ima", "netequip_boot":
				out.LogTypes = append(out.LogTypes, f)
			}
		}
	}
	return out, hasInventory, nil
}

// maxRIMBytes bounds the RIMs one fetch returns (a reply is bounded by
// the session's message limit too).
const maxRIMBytes = 64 << 20

// RIMs fetches the RIMs of the components tagIDs (RFC 9683 Step 0B: the
// verifier gets the device's signed reference values from the device)
// with one <get> whose subtree filter selects just those components.
func (c *Client) RIMs(ctx context.Context, tagIDs []string) ([]RIMFile, error) {
	if len(tagIDs) == 0 {
		return nil, nil
	}
	Progress(ctx, "in-band RIMs")
	var f strings.Builder
	f.WriteString(`<get><filter type="subtree"><software-inventory xmlns="` + nsInventory + `">`)
	for _, id := range tagIDs {
		f.WriteString("<component><tag-id>")
		xml.EscapeText(&f, []byte(id))
		f.WriteString("</tag-id><rim/></component>")
	}
	f.WriteString(`</software-inventory></filter></get>`)
	var out []RIMFile
	err := c.do(ctx, f.String(), func(body []byte) (err error) {
		out, err = DecodeRIMs(body)
		return err
	})
	return out, err
}

// xmlComponent is a software-inventory component as the summary and the
// RIM fetches select it (content only in the latter).
type xmlComponent struct {
	TagID string   `xml:"tag-id"`
	RIMs  []xmlRIM `xml:"rim"`
}

type xmlRIM struct {
	Digest    string `xml:"digest"`
	MediaType string `xml:"media-type"`
	FileName  string `xml:"file-name"`
	Size      string `xml:"size"`
	Content   string `xml:"content"`
}

func (rr xmlRIM) ref() RIMRef {
	size, _ := strconv.ParseUint(strings.TrimSpace(rr.Size), 10, 64)
	return RIMRef{Digest: strings.TrimSpace(rr.Digest), MediaType: strings.TrimSpace(rr.MediaType), FileName: strings.TrimSpace(rr.FileName), Size: size}
}

// DecodeRIMs decodes the reply to a RIMs <get> (its inner body).
func DecodeRIMs(body []byte) ([]RIMFile, error) {
	var r struct {
		Components []xmlComponent `xml:"data>software-inventory>component"`
	}
	if err := xml.Unmarshal(wrap(body), &r); err != nil {
		return nil, fmt.Errorf("decode software-inventory: %w", err)
	}
	var out []RIMFile
	total := 0
	for _, comp := range r.Components {
		for _, rr := range comp.RIMs {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rr.Content))
			if err != nil {
				return nil, fmt.Errorf("RIM %s of %s: content: %w", rr.Digest, comp.TagID, err)
			}
			if total += len(b); total > maxRIMBytes {
				return nil, fmt.Errorf("the RIMs of %d components exceed %d bytes", len(r.Components), maxRIMBytes)
			}
			out = append(out, RIMFile{TagID: strings.TrimSpace(comp.TagID), Content: b,
				RIMRef: rr.ref()})
		}
	}
	return out, nil
}

func wrap(b []byte) []byte { return append(append([]byte("<r>"), b...), "</r>"...) }

func localName(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return s
}

var hashIdentities = map[string]alg.ID{"TPM_ALG_SHA1": alg.SHA1, "TPM_ALG_SHA256": alg.SHA256, "TPM_ALG_SHA384": alg.SHA384, "TPM_ALG_SHA512": alg.SHA512, "TPM_ALG_SM3_256": alg.SM3_256}

func hashByIdentity(s string) (alg.ID, bool) { b, ok := hashIdentities[s]; return b, ok }

// IdentityOf is the ietf-tcg-algs identity of bank b, without its
// prefix ("TPM_ALG_SHA256"); "" for one the module does not name.
func IdentityOf(b alg.ID) string { return identityOf(b) }

func identityOf(b alg.ID) string {
	for k, v := range hashIdentities {
		if v == b {
			return k
		}
	}
	return ""
}

// Challenge runs tpm20-challenge-response-attestation.
func (c *Client) Challenge(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]Quote, error) {
	var quotes []Quote
	err := c.do(ctx, challengeRPC(nonce, sel, c.scope), func(body []byte) (err error) {
		quotes, err = DecodeChallenge(body)
		return err
	})
	return quotes, err
}

func challengeRPC(nonce []byte, sel []pcr.Selection, sc Scope) string {
	var b strings.Builder
	b.WriteString(`<tpm20-challenge-response-attestation xmlns="` + nsTPM + `"><tpm20-attestation-challenge><nonce-value>`)
	b.WriteString(base64.StdEncoding.EncodeToString(nonce))
	b.WriteString(`</nonce-value>`)
	for _, s := range sel {
		b.WriteString(`<tpm20-pcr-selection><tpm20-hash-algo xmlns:taa="` + nsTAA + `">taa:` + identityOf(s.Bank) + `</tpm20-hash-algo>`)
		for _, p := range s.PCRs {
			b.WriteString("<pcr-index>" + strconv.Itoa(p) + "</pcr-index>")
		}
		b.WriteString(`</tpm20-pcr-selection>`)
	}
	if sc.CertificateName != "" {
		b.WriteString("<certificate-name>")
		xml.EscapeText(&b, []byte(sc.CertificateName))
		b.WriteString("</certificate-name>")
	}
	b.WriteString(`</tpm20-attestation-challenge></tpm20-challenge-response-attestation>`)
	return b.String()
}

// Collect runs the challenge and the log retrievals pipelined: all the
// requests leave in one write and the agent answers in order, so every
// log is read after the quote was taken (entries measured in between are
// in the log, never missing from it). A poll costs one round trip
// instead of one per request. The error is the challenge's or the
// session's; a log that failed has its own Err.
func (c *Client) Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, logs []LogRequest) ([]Quote, []LogResult, error) {
	Progress(ctx, "quote and logs")
	bodies := []string{challengeRPC(nonce, sel, c.scope)}
	for _, l := range logs {
		bodies = append(bodies, logRPC(l.Type, l.After, c.scope.TPM))
	}
	var quotes []Quote
	out := make([]LogResult, len(logs))
	err := c.s.doAll(ctx, func(replies []reply) error {
		if replies[0].err != nil {
			return replies[0].err
		}
		var err error
		if quotes, err = DecodeChallenge(replies[0].inner); err != nil {
			return err
		}
		for k, l := range logs {
			r := &out[k]
			if r.Err = replies[k+1].err; r.Err != nil {
				continue
			}
			r.Log, r.UpTime, r.Err = DecodeLogs(replies[k+1].inner, l.Type)
		}
		return nil
	}, bodies...)
	if err != nil {
		return nil, nil, err
	}
	// A full page: the rest page by page (after the replies' buffer is
	// released).
	for k, l := range logs {
		r := &out[k]
		if r.Err != nil {
			continue
		}
		next, err := nextPage(r.Log, l.Type, l.After)
		if err == nil && next != nil {
			var rest *eventlog.Log
			if rest, _, err = c.logs(ctx, l.Type, next, maxLogPages-1); err == nil {
				r.Log.Events = append(r.Log.Events, rest.Events...)
			}
		}
		if err != nil {
			r.Log, r.Err = nil, err
		}
	}
	return quotes, out, nil
}

// LogPage is how many entries one log-retrieval request asks for; a
// longer log is fetched page by page (agents cap a reply, RIV's at 10000).
const LogPage = 4096

// maxLogPages bounds the pages of one Logs call (about 1M entries), so a
// device cannot keep a collector fetching forever.
const maxLogPages = 256

// Logs runs log-retrieval for logType ("bios", "netequip_boot", "ima")
// from after event number after (nil for the whole log) and decodes the
// entries into an event log, following pages until the log is exhausted.
func (c *Client) Logs(ctx context.Context, logType string, after *uint64) (*eventlog.Log, uint32, error) {
	return c.logs(ctx, logType, after, maxLogPages)
}

func (c *Client) logs(ctx context.Context, logType string, after *uint64, pages int) (*eventlog.Log, uint32, error) {
	return Pages(logType, after, pages, func(after *uint64) (l *eventlog.Log, u uint32, err error) {
		err = c.do(ctx, logRPC(logType, after, c.scope.TPM), func(body []byte) (err error) {
			l, u, err = DecodeLogs(body, logType)
			return err
		})
		return l, u, err
	})
}

// Pages follows the pages of a log: fetch gets the page after event
// number after (nil: from the start), at most pages of them; the result
// is every entry, with the first page's up-time. A transport's client
// gives it its request.
func Pages(logType string, after *uint64, pages int, fetch func(after *uint64) (*eventlog.Log, uint32, error)) (*eventlog.Log, uint32, error) {
	var out *eventlog.Log
	var up uint32
	for range pages {
		l, u, err := fetch(after)
		if err != nil {
			return nil, 0, err
		}
		if out == nil {
			out, up = l, u
		} else {
			out.Events = append(out.Events, l.Events...)
		}
		if after, err = nextPage(l, logType, after); err != nil {
			return nil, 0, err
		}
		if after == nil {
			return out, up, nil
		}
	}
	return nil, 0, fmt.Errorf("log-retrieval %s: more than %d entries", logType, pages*LogPage)
}

func nextPage(l *eventlog.Log, logType string, after *uint64) (*uint64, error) {
	if len(l.Events) < LogPage {
		return nil, nil
	}
	last := uint64(l.Events[len(l.Events)-1].Seq)
	if after != nil && last <= *after {
		return nil, fmt.Errorf("log-retrieval %s: the device repeated entries up to %d", logType, last)
	}
	return &last, nil
}

// logRPC asks for one page of logType after event number after, of the
// TPM named tpm ("": the device's only one).
func logRPC(logType string, after *uint64, tpm string) string {
	sel := "<log-selector>"
	if tpm != "" {
		var b strings.Builder
		xml.EscapeText(&b, []byte(tpm))
		sel += "<name>" + b.String() + "</name>"
	}
	if after != nil {
		sel += "<last-index-number>" + strconv.FormatUint(*after, 10) + "</last-index-number>"
	}
	sel += "<log-entry-quantity>" + strconv.Itoa(LogPage) + "</log-entry-quantity></log-selector>"
	return `<log-retrieval xmlns="` + nsTPM + `"><log-type xmlns:tpm="` + nsTPM + `">tpm:` + logType + `</log-type>` + sel + `</log-retrieval>`
}

// DecodeLogs decodes a log-retrieval reply body into an event log.
func DecodeLogs(body []byte, logType string) (*eventlog.Log, uint32, error) {
	return newLogDecoder(body).decode(logType)
}
