// Package netconf serves the attester over NETCONF (RFC 6241): over SSH
// (RFC 6242) with the TPM-resident IDevID as host key, and over TLS (RFC
// 7589) with the IDevID as server certificate and client certificates
// mapped to user names. It implements hello and capabilities, <get>,
// <get-config>, <get-data> (RFC 8526), <get-schema> (RFC 6022),
// <close-session>, <kill-session>, subtree filters, the RFC 9684 RPCs, and
// NACM (RFC 8341) with default-deny on the attestation RPCs.
package netconf

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemith/netconf/transport"

	"github.com/openriv/riv/agent/attester"
)

// Config configures a Server.
type Config struct {
	Attester *attester.Attester
	// NACM is the access control configuration; its zero value denies the
	// attestation RPCs to everyone.
	NACM NACM
	// MaxMessageSize bounds one received message (default 1 MiB).
	MaxMessageSize int
	// IdleTimeout closes sessions that send nothing for this long
	// (default 10 minutes); HelloTimeout bounds the hello (default 30 s).
	IdleTimeout  time.Duration
	HelloTimeout time.Duration
	Logger       *slog.Logger
}

// Server is a NETCONF server.
type Server struct {
	cfg      Config
	nextID   atomic.Uint32
	mu       sync.Mutex
	sessions map[uint32]*session
}

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Attester == nil {
		return nil, errors.New("netconf: attester is required")
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, sessions: map[uint32]*session{}}, nil
}

// Capabilities the agent announces.
func (s *Server) capabilities() []string {
	return []string{
		"urn:ietf:params:netconf:base:1.0",
		"urn:ietf:params:netconf:base:1.1",
		"urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id=" + s.contentID(),
		NSTPM + "?module=ietf-tpm-remote-attestation&revision=2024-12-05&features=" + s.tpmFeatures(),
		NSTAA + "?module=ietf-tcg-algs&revision=2024-12-05&features=tpm20",
		NSKeystore + "?module=ietf-keystore&revision=2024-10-10&features=central-keystore-supported,asymmetric-keys",
		NSMonitoring + "?module=ietf-netconf-monitoring&revision=2010-10-04",
		NSNMDA + "?module=ietf-netconf-nmda&revision=2019-01-07",
	}
}

func (s *Server) tpmFeatures() string {
	var f []string
	for _, t := range s.cfg.Attester.Config().LogTypes {
		f = append(f, string(t))
	}
	return strings.Join(f, ",")
}

// session is one NETCONF session.
type session struct {
	id      uint32
	user    string
	conn    io.Closer
	framer  *transport.Framer // reads messages
	w       io.Writer         // writes go straight to the stream, see write
	chunked bool              // base:1.1 framing after the hellos
	wmu     sync.Mutex
	closed  chan struct{}
	once    sync.Once
}

func (ss *session) close() {
	ss.once.Do(func() {
		close(ss.closed)
		ss.conn.Close()
	})
}

// deadliner sets read deadlines on the underlying connection, so a peer
// that trickles bytes (slowloris) is cut off.
type deadliner interface{ SetReadDeadline(time.Time) error }

// serve runs one session over rw for an authenticated user.
func (s *Server) serve(ctx context.Context, rw io.ReadWriteCloser, user string, dl deadliner) {
	id := s.nextID.Add(1)
	ss := &session{id: id, user: user, conn: rw, framer: transport.NewFramer(rw, rw), w: rw, closed: make(chan struct{})}
	s.mu.Lock()
	s.sessions[id] = ss
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, id)
		s.mu.Unlock()
		ss.close()
	}()
	log := s.cfg.Logger.With("session", id, "user", user)
	log.Info("session started")
	defer log.Info("session ended")
	go func() {
		select {
		case <-ctx.Done():
			ss.close()
		case <-ss.closed:
		}
	}()

	var hello bytes.Buffer
	hello.WriteString(`<?xml version="1.0" encoding="UTF-8"?><hello xmlns="` + NSBase + `"><capabilities>`)
	for _, c := range s.capabilities() {
		hello.WriteString("<capability>")
		xml.EscapeText(&hello, []byte(c))
		hello.WriteString("</capability>")
	}
	fmt.Fprintf(&hello, "</capabilities><session-id>%d</session-id></hello>", id)
	if err := ss.write(hello.Bytes()); err != nil {
		return
	}
	if dl != nil {
		s.mu.Lock()
		hello := s.cfg.HelloTimeout
		s.mu.Unlock()
		dl.SetReadDeadline(time.Now().Add(hello))
	}
	msg, err := s.read(ss)
	if err != nil {
		log.Warn("no client hello", "err", err)
		return
	}
	caps, err := parseHello(msg)
	if err != nil {
		log.Warn("bad client hello", "err", err)
		return
	}
	if contains(caps, "urn:ietf:params:netconf:base:1.1") {
		ss.framer.Upgrade()
		ss.chunked = true
	} else if !contains(caps, "urn:ietf:params:netconf:base:1.0") {
		log.Warn("client hello without a common base capability")
		return
	}
	for {
		if dl != nil {
			dl.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		msg, err := s.read(ss)
		if err != nil {
			if errors.Is(err, errTooBig) {
				ss.write(rpcErrorReply("", &attester.RPCError{Type: "rpc", Tag: "too-big", Message: err.Error()}))
			}
			return
		}
		log.Debug("rpc", "bytes", len(msg))
		reply, done := s.handle(ctx, ss, msg)
		log.Debug("reply", "bytes", len(reply))
		if reply != nil {
			if err := ss.write(reply); err != nil {
				return
			}
		}
		if done {
			return
		}
	}
}

var errTooBig = errors.New("message exceeds the size limit")

func (s *Server) read(ss *session) ([]byte, error) {
	r, err := ss.framer.MsgReader()
	if err != nil {
		return nil, err
	}
	// No Close: the framer's Close reads on to the next end-of-message
	// marker even after this reader reached it, swallowing the next
	// message. ReadAll stops at the marker; an over-long message ends the
	// session instead of being drained.
	s.mu.Lock()
	max := s.cfg.MaxMessageSize
	s.mu.Unlock()
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w (%d bytes)", errTooBig, max)
	}
	return b, nil
}

// write frames b and sends it in one Write: the framer's writer flushes
// every 4 KiB, and each flush became a TLS record, a TCP segment and a
// wake-up of the collector (a 100-entry log reply took ~15 of them).
func (ss *session) write(b []byte) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if len(b) == 0 {
		return errors.New("netconf: empty message")
	}
	var buf []byte
	if ss.chunked {
		buf = make([]byte, 0, len(b)+24)
		buf = append(strconv.AppendInt(append(buf, "\n#"...), int64(len(b)), 10), '\n')
		buf = append(append(buf, b...), "\n##\n"...)
	} else {
		buf = append(append(make([]byte, 0, len(b)+6), b...), "]]>]]>"...)
	}
	_, err := ss.w.Write(buf)
	return err
}

func parseHello(b []byte) ([]string, error) {
	var h struct {
		XMLName      xml.Name `xml:"hello"`
		Capabilities []string `xml:"capabilities>capability"`
	}
	if err := xml.Unmarshal(b, &h); err != nil {
		return nil, err
	}
	for i := range h.Capabilities {
		h.Capabilities[i] = strings.TrimSpace(h.Capabilities[i])
	}
	return h.Capabilities, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Sessions lists the ids of the open sessions, in order.
func (s *Server) Sessions() []uint32 {
	s.mu.Lock()
	ids := make([]uint32, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Kill ends a session, as <kill-session> does; false if none has that id.
func (s *Server) Kill(id uint32) bool {
	s.mu.Lock()
	ss, ok := s.sessions[id]
	s.mu.Unlock()
	if ok {
		ss.close()
	}
	return ok
}

// Listener accepts connections until ctx ends.
func acceptLoop(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go handle(c)
	}
}

// SetNACM replaces the access control configuration (a reload).
func (s *Server) SetNACM(n NACM) {
	s.mu.Lock()
	s.cfg.NACM = n
	s.mu.Unlock()
}

// SetLimits changes the message size limit and the hello timeout.
func (s *Server) SetLimits(maxMessage int, hello time.Duration) {
	s.mu.Lock()
	s.cfg.MaxMessageSize, s.cfg.HelloTimeout = maxMessage, hello
	s.mu.Unlock()
}

func (s *Server) nacm() *NACM {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.cfg.NACM
	return &n
}

// Exchange runs one <rpc> message for user outside any NETCONF session and
// returns the <rpc-reply>: the RESTCONF server maps its requests onto the
// same operations, so access control, validation and errors are the
// NETCONF ones. The exchange is not a session (kill-session cannot reach
// it) and close-session only answers <ok/>.
func (s *Server) Exchange(ctx context.Context, user string, rpc []byte) []byte {
	reply, _ := s.handle(ctx, &session{id: s.nextID.Add(1), user: user}, rpc)
	return reply
}

// MapCertToName maps a verified client chain to a user name with the
// cert-to-name rules (RFC 7589 §7); "" when none applies.
func MapCertToName(chains [][]*x509.Certificate, rules []CertToName) string {
	return mapCertToName(chains, rules)
}
