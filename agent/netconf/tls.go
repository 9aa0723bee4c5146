package netconf

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"time"
)

// CertToName maps a client certificate to a NETCONF user name (RFC 7589
// §7, ietf-x509-cert-to-name): the entry whose Fingerprint matches a
// certificate of the client's verified chain (empty matches any) applies
// its MapType.
type CertToName struct {
	// Fingerprint is the SHA-256 of a certificate's DER (leaf or a CA in
	// its chain).
	Fingerprint []byte `yaml:"fingerprint"`
	// MapType: "specified" (use Name), "san-rfc822-name", "san-dns-name",
	// "common-name".
	MapType string `yaml:"map-type"`
	Name    string `yaml:"name"`
}

// TLSConfig configures NETCONF over TLS (RFC 7589).
type TLSConfig struct {
	// Certificate is the IDevID certificate with its TPM-resident key.
	Certificate tls.Certificate
	// ClientCAs verify client certificates, which are required.
	ClientCAs  *x509.CertPool
	CertToName []CertToName
	// HandshakeTimeout bounds the TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// SessionTickets enables TLS 1.3 resumption (default on).
	DisableSessionTickets bool
}

// ServeTLS accepts NETCONF-over-TLS sessions on ln until ctx ends.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, c TLSConfig) error {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{c.Certificate},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              c.ClientCAs,
		SessionTicketsDisabled: c.DisableSessionTickets,
		// Full-size records from the first byte: a client reads the
		// whole reply before using it, so small early records only
		// multiply segments and wake-ups.
		DynamicRecordSizingDisabled: true,
	}
	return s.acceptLoop(ctx, "netconf-tls", ln, func(conn net.Conn, release func()) {
		cc := &corkConn{Conn: conn}
		tc := tls.Server(cc, cfg)
		hctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		release()
		if err != nil {
			s.quiet.Info("tls handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		user := mapCertToName(tc.ConnectionState().VerifiedChains, c.CertToName)
		if user == "" {
			s.quiet.Warn("tls client certificate maps to no user", "remote", conn.RemoteAddr().String())
			tc.Close()
			return
		}
		s.serve(ctx, &corkedTLS{Conn: tc, cork: cc}, peer{user: user, transport: "netconf-tls", addr: conn.RemoteAddr(), dl: tc})
	})
}

// corkConn holds what TLS writes while corked and sends it in one write:
// crypto/tls writes each record (16 KiB at most) with its own system
// call, and each became a wake-up of the collector reading the reply.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkConn) setCork(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = on
	if on || len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// corkedTLS is a TLS session whose message writes leave as one write.
type corkedTLS struct {
	*tls.Conn
	cork *corkConn
}

func (c *corkedTLS) Write(p []byte) (int, error) {
	c.cork.setCork(true)
	n, err := c.Conn.Write(p)
	if ferr := c.cork.setCork(false); err == nil {
		err = ferr
	}
	return n, err
}

func mapCertToName(chains [][]*x509.Certificate, rules []CertToName) string {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ""
	}
	leaf := chains[0][0]
	for _, r := range rules {
		if len(r.Fingerprint) > 0 {
			hit := false
			for _, c := range chains[0] {
				fp := sha256.Sum256(c.Raw)
				hit = hit || string(fp[:]) == string(r.Fingerprint)
			}
			if !hit {
				continue
			}
		}
		switch strings.ToLower(r.MapType) {
		case "specified":
			return r.Name
		case "san-rfc822-name":
			if len(leaf.EmailAddresses) > 0 {
				return leaf.EmailAddresses[0]
			}
		case "san-dns-name":
			if len(leaf.DNSNames) > 0 {
				return strings.ToLower(leaf.DNSNames[0])
			}
		case "common-name":
			if leaf.Subject.CommonName != "" {
				return leaf.Subject.CommonName
			}
		}
	}
	return ""
}
