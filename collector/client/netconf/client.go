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
	"net"
	"strconv"
	"strings"
	"time"

	nc "github.com/nemith/netconf"
	ncssh "github.com/nemith/netconf/transport/ssh"
	nctls "github.com/nemith/netconf/transport/tls"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
)

const (
	nsTPM = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"
	nsTAA = "urn:ietf:params:xml:ns:yang:ietf-tcg-algs"
	nsKS  = "urn:ietf:params:xml:ns:yang:ietf-keystore"
)

// Client is a NETCONF session to one agent.
type Client struct {
	s *session
	// HostKey is the SSH host key the device presented (SSH only); the
	// verifier checks it is the IDevID certificate's key.
	HostKey crypto.PublicKey
	// PeerCerts are the TLS server certificates (TLS only).
	PeerCerts []*x509.Certificate
}

// DialSSH opens NETCONF over SSH. The host key is recorded, not trusted:
// the caller binds it to the device's IDevID certificate.
func DialSSH(ctx context.Context, addr, user string, key crypto.Signer) (*Client, error) {
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
		Timeout: 10 * time.Second,
	}
	tr, err := ncssh.Dial(ctx, "tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("netconf ssh %s: %w", addr, err)
	}
	if c.s, err = openSession(tr); err != nil {
		return nil, fmt.Errorf("netconf ssh %s: hello: %w", addr, err)
	}
	return c, nil
}

// DialTLS opens NETCONF over TLS (RFC 7589); cfg must hold the client
// certificate and the manufacturer anchors as RootCAs.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS13 {
		cfg.MinVersion = tls.VersionTLS13
	}
	tr, err := nctls.Dial(ctx, "tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("netconf tls %s: %w", addr, err)
	}
	c := &Client{}
	if c.s, err = openSession(tr); err != nil {
		return nil, fmt.Errorf("netconf tls %s: hello: %w", addr, err)
	}
	return c, nil
}

// Close ends the session.
func (c *Client) Close() error { return c.s.close() }

// do sends an RPC whose operation is body (trusted XML built here).
func (c *Client) do(ctx context.Context, body string) ([]byte, error) {
	return c.s.do(ctx, body)
}

// RPCError is an rpc-error reply.
type RPCError struct {
	Err    error
	Errors nc.RPCErrors
}

func (e *RPCError) Error() string {
	if len(e.Errors) > 0 {
		return fmt.Sprintf("rpc-error %s: %s", e.Errors[0].Tag, e.Errors[0].Message)
	}
	return e.Err.Error()
}

// Certificates returns the certificates the agent lists in
// rats-support-structures, resolved from ietf-keystore, by name and type.
type Certificate struct {
	Name string
	Type string
	Cert *x509.Certificate
}

// Certificates fetches rats-support-structures and the keystore.
func (c *Client) Certificates(ctx context.Context) ([]Certificate, []alg.ID, error) {
	body, err := c.do(ctx, `<get><filter type="subtree"><rats-support-structures xmlns="`+nsTPM+`"/><keystore xmlns="`+nsKS+`"/></filter></get>`)
	if err != nil {
		return nil, nil, err
	}
	var r struct {
		RSS struct {
			Certs []struct {
				Name string `xml:"name"`
				Ref  string `xml:"keystore-ref"`
				Type string `xml:"type"`
			} `xml:"tpms>tpm>certificates>certificate"`
			Hashes []string `xml:"attester-supported-algos>tpm20-hash"`
		} `xml:"data>rats-support-structures"`
		Keys []struct {
			Name  string `xml:"name"`
			Certs []struct {
				Name string `xml:"name"`
				Data string `xml:"cert-data"`
			} `xml:"certificates>certificate"`
		} `xml:"data>keystore>asymmetric-keys>asymmetric-key"`
	}
	if err := xml.Unmarshal(wrap(body), &r); err != nil {
		return nil, nil, fmt.Errorf("decode rats-support-structures: %w", err)
	}
	var out []Certificate
	for _, rc := range r.RSS.Certs {
		for _, k := range r.Keys {
			if k.Name != rc.Ref {
				continue
			}
			for _, kc := range k.Certs {
				der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(kc.Data))
				if err != nil {
					return nil, nil, fmt.Errorf("certificate %s: %w", rc.Name, err)
				}
				certs, err := identity.ParseCertsOnlyCMS(der)
				if err != nil || len(certs) == 0 {
					return nil, nil, fmt.Errorf("certificate %s: %v", rc.Name, err)
				}
				out = append(out, Certificate{Name: rc.Name, Type: rc.Type, Cert: certs[0]})
			}
		}
	}
	var banks []alg.ID
	for _, h := range r.RSS.Hashes {
		if b, ok := hashByIdentity(localName(h)); ok {
			banks = append(banks, b)
		}
	}
	return out, banks, nil
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

func identityOf(b alg.ID) string {
	for k, v := range hashIdentities {
		if v == b {
			return k
		}
	}
	return ""
}

// Quote is one tpm20-attestation-response.
type Quote struct {
	CertificateName string
	Attest, Sig     []byte
	UpTime          uint32
	Unsigned        pcr.Values
}

// Challenge runs tpm20-challenge-response-attestation.
func (c *Client) Challenge(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]Quote, error) {
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
	b.WriteString(`</tpm20-attestation-challenge></tpm20-challenge-response-attestation>`)
	body, err := c.do(ctx, b.String())
	if err != nil {
		return nil, err
	}
	var r struct {
		R []struct {
			Cert  string `xml:"certificate-name"`
			Quote string `xml:"quote-data"`
			Sig   string `xml:"quote-signature"`
			Up    uint32 `xml:"up-time"`
			PCRs  []struct {
				Algo string `xml:"tpm20-hash-algo"`
				V    []struct {
					I int    `xml:"pcr-index"`
					V string `xml:"pcr-value"`
				} `xml:"pcr-values"`
			} `xml:"unsigned-pcr-values"`
		} `xml:"tpm20-attestation-response"`
	}
	if err := xml.Unmarshal(wrap(body), &r); err != nil {
		return nil, fmt.Errorf("decode challenge reply: %w", err)
	}
	var out []Quote
	for _, x := range r.R {
		q := Quote{CertificateName: x.Cert, UpTime: x.Up, Unsigned: pcr.Values{}}
		var err1, err2 error
		q.Attest, err1 = base64.StdEncoding.DecodeString(strings.TrimSpace(x.Quote))
		q.Sig, err2 = base64.StdEncoding.DecodeString(strings.TrimSpace(x.Sig))
		if err1 != nil || err2 != nil {
			return nil, errors.New("challenge reply: quote-data or quote-signature is not base64")
		}
		for _, u := range x.PCRs {
			bank, ok := hashByIdentity(localName(u.Algo))
			if !ok {
				continue
			}
			for _, v := range u.V {
				if d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v.V)); err == nil && v.I >= 0 && v.I <= pcr.MaxPCR {
					q.Unsigned.Set(bank, v.I, d)
				}
			}
		}
		out = append(out, q)
	}
	if len(out) == 0 {
		return nil, errors.New("challenge reply has no tpm20-attestation-response")
	}
	return out, nil
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
	var out *eventlog.Log
	var up uint32
	for range maxLogPages {
		sel := "<log-selector>"
		if after != nil {
			sel += "<last-index-number>" + strconv.FormatUint(*after, 10) + "</last-index-number>"
		}
		sel += "<log-entry-quantity>" + strconv.Itoa(LogPage) + "</log-entry-quantity></log-selector>"
		body, err := c.do(ctx, `<log-retrieval xmlns="`+nsTPM+`"><log-type xmlns:tpm="`+nsTPM+`">tpm:`+logType+`</log-type>`+sel+`</log-retrieval>`)
		if err != nil {
			return nil, 0, err
		}
		l, u, err := DecodeLogs(body, logType)
		if err != nil {
			return nil, 0, err
		}
		if out == nil {
			out, up = l, u
		} else {
			out.Events = append(out.Events, l.Events...)
		}
		if len(l.Events) < LogPage {
			return out, up, nil
		}
		last := uint64(l.Events[len(l.Events)-1].Seq)
		if after != nil && last <= *after {
			return nil, 0, fmt.Errorf("log-retrieval %s: the device repeated entries up to %d", logType, last)
		}
		after = &last
	}
	return nil, 0, fmt.Errorf("log-retrieval %s: more than %d entries", logType, maxLogPages*LogPage)
}

// DecodeLogs decodes a log-retrieval reply body into an event log.
func DecodeLogs(body []byte, logType string) (*eventlog.Log, uint32, error) {
	return newLogDecoder(body).decode(logType)
}
