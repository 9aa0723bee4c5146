// Package netconf serves the attester over NETCONF (RFC 6241): over SSH
// (RFC 6242) with the TPM-resident IDevID as host key, and over TLS (RFC
// 7589) with the IDevID as server certificate and client certificates
// mapped to user names. It implements hello and capabilities, <get>,
// <get-config>, <get-data> (RFC 8526) with max-depth and config-filter,
// with-defaults (RFC 6243), <get-schema> (RFC 6022) from the modules
// embedded in the binary, <close-session>, <kill-session>, subtree
// filters, the RFC 9684 RPCs, the YANG library (RFC 8525), NETCONF
// monitoring, the software inventory and its RIMs (the project's
// riv-software-inventory, when Config.Inventory is set), and NACM (RFC
// 8341) with default-deny on the attestation RPCs. Every RPC's input is
// validated against the modules (pkg/schema), with the errors RFC 7950
// §8.3.1 and §15 name. Operations the modules define but the agent does
// not carry out (edit-config, lock, ...) are refused with
// operation-not-supported.
package netconf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/pkg/frame"
	"github.com/openriv/riv/pkg/schema"
)

// Config configures a Server.
type Config struct {
	Attester *attester.Attester
	// NACM is the access control configuration; its zero value denies the
	// attestation RPCs to everyone.
	NACM NACM
	// MaxMessageSize bounds one received message, framing included
	// (default 1 MiB).
	MaxMessageSize int
	// IdleTimeout closes sessions that send nothing for this long
	// (default 10 minutes); HelloTimeout bounds the hello (default 30 s).
	IdleTimeout  time.Duration
	HelloTimeout time.Duration
	Limits       Limits
	// RESTCONF, when set, lists the capabilities of the RESTCONF server
	// on the same datastore: ietf-restconf-monitoring is then implemented
	// and restconf-state served (RFC 8040 §9.1).
	RESTCONF []string
	// Inventory, when set, returns the software inventory to serve now:
	// riv-software-inventory is then implemented. It is called for each
	// retrieval, so a reload (inventory.Store.Reload) is served from the
	// next request on, in every open session. It may return nil (served
	// as an empty inventory).
	Inventory func() *inventory.Inventory
	Logger    *slog.Logger
}

// Limits bound what one peer can hold (OpenSSH's MaxStartups and
// MaxSessions play the same part).
type Limits struct {
	// MaxStartups bounds connections not yet authenticated, in all
	// (default 64) and from one source address (default 10); a
	// connection over either bound is closed at once.
	MaxStartups, MaxStartupsPerSource int
	// MaxSessionsPerUser bounds a user's open NETCONF sessions (default
	// 32).
	MaxSessionsPerUser int
	// MaxChannelsPerConn bounds the SSH channels of one connection
	// (default 4).
	MaxChannelsPerConn int
	// SubsystemTimeout closes an SSH connection that has not opened the
	// netconf subsystem this long after authenticating (default 10 s).
	SubsystemTimeout time.Duration
	// WriteTimeout bounds one reply's write to a peer that stopped
	// reading (default 60 s); the session then ends.
	WriteTimeout time.Duration
}

func (l *Limits) defaults() {
	if l.MaxStartups == 0 {
		l.MaxStartups = 64
	}
	if l.MaxStartupsPerSource == 0 {
		l.MaxStartupsPerSource = 10
	}
	if l.MaxSessionsPerUser == 0 {
		l.MaxSessionsPerUser = 32
	}
	if l.MaxChannelsPerConn == 0 {
		l.MaxChannelsPerConn = 4
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = 60 * time.Second
	}
	if l.SubsystemTimeout == 0 {
		l.SubsystemTimeout = 10 * time.Second
	}
}

// Server is a NETCONF server.
type Server struct {
	cfg      Config
	schema   *schema.Set
	nextID   atomic.Uint32
	mu       sync.Mutex
	sessions map[uint32]*session
	gate     *gate
	quiet    *quietLog
	stats    stats

	stateOnce sync.Once
	state     []*schema.Elem // the support structures, for must expressions

	// busy counts the RPCs being answered (a reply in its write
	// included); draining refuses new connections while Drain waits for
	// busy to reach zero.
	busy     atomic.Int32
	draining atomic.Bool

	libOnce sync.Once
	lib     struct {
		impl, importOnly []*schema.Module
		contentID        string
	}

	inventory atomic.Pointer[renderedInventory]
}

// stats are the counters of ietf-netconf-monitoring's statistics.
type stats struct {
	start                                    time.Time
	inBadHellos, inSessions, droppedSessions atomic.Uint32
	inRPCs, inBadRPCs, outRPCErrors          atomic.Uint32
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
	cfg.Limits.defaults()
	sch, err := compileSchema(cfg.Attester.LogTypes(), len(cfg.RESTCONF) > 0, cfg.Inventory != nil, cfg.Attester.MultiTPM())
	if err != nil {
		return nil, fmt.Errorf("netconf: %w", err)
	}
	s := &Server{cfg: cfg, schema: sch, sessions: map[uint32]*session{}, quiet: newQuietLog(cfg.Logger)}
	s.gate = &gate{max: cfg.Limits.MaxStartups, perSource: cfg.Limits.MaxStartupsPerSource, bySrc: map[string]int{}}
	s.stats.start = time.Now()
	return s, nil
}

// namespaceOf maps a prefix of an error-path (the modules' own prefixes)
// to its module's namespace, "" for none.
func (s *Server) namespaceOf(prefix string) string {
	if m := s.schema.ModuleByPrefix(prefix); m != nil {
		return m.Namespace
	}
	return ""
}

// Schema returns the compiled modules the server validates against.
func (s *Server) Schema() *schema.Set { return s.schema }

// stateElems returns the support structures as instance data, for the
// must expressions of the RPCs (the challenge's bank must be one the TPM
// supports). They do not change while the agent runs.
func (s *Server) stateElems() []*schema.Elem {
	s.stateOnce.Do(func() {
		var xs []*schema.XML
		for _, n := range s.stateTree() {
			x, err := schema.ParseXML([]byte(n.String()), schema.Limits{})
			if err == nil {
				xs = append(xs, x)
			}
		}
		st, err := s.schema.Data(xs)
		if err != nil {
			s.cfg.Logger.Error("support structures do not fit the schema", "err", err)
		}
		s.state = st
	})
	return s.state
}

// capabilities the agent announces: the base protocol, with-defaults (RFC
// 6243) also for the operational datastore (RFC 8526 §3.1.1), the YANG
// library (RFC 8525), and the YANG 1.0 modules it implements. YANG 1.1
// modules are announced only through the YANG library (RFC 7950 §5.6.4).
func (s *Server) capabilities() []string {
	const wd = "?basic-mode=explicit&also-supported=report-all,report-all-tagged,trim"
	caps := []string{
		"urn:ietf:params:netconf:base:1.0",
		"urn:ietf:params:netconf:base:1.1",
		"urn:ietf:params:netconf:capability:with-defaults:1.0" + wd,
		"urn:ietf:params:netconf:capability:with-operational-defaults:1.0" + wd,
		"urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id=" + s.contentID(),
	}
	impl, _ := s.library()
	for _, m := range impl {
		if m.YANGVersion != "1" {
			continue
		}
		c := m.Namespace + "?module=" + m.Name + "&revision=" + m.Revision
		if len(m.Features) > 0 {
			c += "&features=" + strings.Join(m.Features, ",")
		}
		caps = append(caps, c)
	}
	return caps
}

// session is one NETCONF session.
type session struct {
	id        uint32
	user      string
	transport string // ietf-netconf-monitoring transport identity
	source    string // the peer's address
	login     time.Time
	conn      io.Closer
	fr        *frame.Reader
	w         io.Writer // writes go straight to the stream, see write
	wmu       sync.Mutex
	closed    chan struct{}
	once      sync.Once
	srv       *Server
	dl        deadliner     // nil for in-process exchanges
	wtimeout  time.Duration // bounds each write to a peer that stops reading

	inRPC, inBadRPC, outErrors atomic.Uint32
}

func (ss *session) close() {
	ss.once.Do(func() {
		close(ss.closed)
		if ss.conn != nil {
			ss.conn.Close()
		}
	})
}

func (ss *session) inRPCs() {
	ss.inRPC.Add(1)
	if ss.srv != nil {
		ss.srv.stats.inRPCs.Add(1)
	}
}

func (ss *session) badRPC() {
	ss.inBadRPC.Add(1)
	if ss.srv != nil {
		ss.srv.stats.inBadRPCs.Add(1)
	}
}

func (ss *session) rpcError() {
	ss.outErrors.Add(1)
	if ss.srv != nil {
		ss.srv.stats.outRPCErrors.Add(1)
	}
}

// deadliner sets read deadlines on the underlying connection, so a peer
// that trickles bytes (slowloris) is cut off.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// peer describes an authenticated connection a session runs on.
type peer struct {
	user      string
	transport string // "netconf-ssh" or "netconf-tls"
	addr      net.Addr
	dl        deadliner
}

// serve runs one session over rw for an authenticated user.
func (s *Server) serve(ctx context.Context, rw io.ReadWriteCloser, p peer) {
	id := s.nextID.Add(1)
	// The session's context ends with the session (closed, killed, the
	// server stopping), so a quote it queued for is given up, not taken.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss := &session{id: id, user: p.user, transport: p.transport, login: time.Now(), conn: rw, fr: frame.NewReader(rw), w: rw, closed: make(chan struct{}), srv: s,
		dl: p.dl, wtimeout: s.cfg.Limits.WriteTimeout}
	if p.addr != nil {
		ss.source = p.addr.String()
	}
	s.mu.Lock()
	n := 0
	for _, o := range s.sessions {
		if o.user == p.user {
			n++
		}
	}
	if n >= s.cfg.Limits.MaxSessionsPerUser {
		s.mu.Unlock()
		s.stats.droppedSessions.Add(1)
		s.quiet.Warn("session refused: the user has too many sessions", "user", p.user, "limit", s.cfg.Limits.MaxSessionsPerUser)
		rw.Close()
		return
	}
	s.sessions[id] = ss
	s.mu.Unlock()
	s.stats.inSessions.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.sessions, id)
		s.mu.Unlock()
		ss.close()
	}()
	log := s.cfg.Logger.With("session", id, "user", p.user)
	log.Info("session started", "transport", p.transport, "remote", ss.source)
	defer log.Info("session ended")
	go func() {
		select {
		case <-ctx.Done():
			ss.close()
		case <-ss.closed:
		}
		cancel()
	}()

	var hello strings.Builder
	hello.WriteString(`<?xml version="1.0" encoding="UTF-8"?><hello xmlns="` + NSBase + `"><capabilities>`)
	for _, c := range s.capabilities() {
		hello.WriteString("<capability>")
		escape(&hello, c)
		hello.WriteString("</capability>")
	}
	fmt.Fprintf(&hello, "</capabilities><session-id>%d</session-id></hello>", id)
	if err := ss.write([]byte(hello.String())); err != nil {
		return
	}
	if p.dl != nil {
		s.mu.Lock()
		ht := s.cfg.HelloTimeout
		s.mu.Unlock()
		p.dl.SetReadDeadline(time.Now().Add(ht))
	}
	msg, err := s.read(ss)
	if err != nil {
		s.stats.inBadHellos.Add(1)
		log.Warn("no client hello", "err", err)
		return
	}
	caps, err := parseHello(msg)
	if err != nil {
		s.stats.inBadHellos.Add(1)
		log.Warn("bad client hello", "err", err)
		return
	}
	if slices.Contains(caps, "urn:ietf:params:netconf:base:1.1") {
		ss.fr.Upgrade()
	} else if !slices.Contains(caps, "urn:ietf:params:netconf:base:1.0") {
		s.stats.inBadHellos.Add(1)
		log.Warn("client hello without a common base capability")
		return
	}
	for {
		if p.dl != nil {
			p.dl.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		msg, err := s.read(ss)
		if err != nil {
			if errors.Is(err, frame.ErrTooBig) {
				ss.write(rpcErrorReply(nil, &attester.RPCError{Type: "rpc", Tag: "too-big", Message: err.Error()}, nil))
			} else if errors.Is(err, frame.ErrFraming) {
				ss.write(rpcErrorReply(nil, &attester.RPCError{Type: "rpc", Tag: "malformed-message", Message: err.Error()}, nil))
			}
			return
		}
		log.Debug("rpc", "bytes", len(msg))
		// Counted before the check, so that Drain, which sets draining
		// and then waits for busy, never misses an RPC being begun.
		s.busy.Add(1)
		if s.draining.Load() {
			// Stopping: an RPC that arrives now is not begun (the session
			// ends, as it would a moment later).
			s.busy.Add(-1)
			return
		}
		reply, done := s.handle(sctx, ss, msg)
		log.Debug("reply", "bytes", len(reply))
		var werr error
		if reply != nil {
			werr = ss.write(reply)
		}
		s.busy.Add(-1)
		if werr != nil || done {
			return
		}
	}
}

func (s *Server) read(ss *session) ([]byte, error) {
	s.mu.Lock()
	max := s.cfg.MaxMessageSize
	s.mu.Unlock()
	return ss.fr.ReadMsg(nil, max)
}

// write frames b and sends it in one Write: each write became a TLS
// record, a TCP segment and a wake-up of the collector.
func (ss *session) write(b []byte) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if len(b) == 0 {
		return errors.New("netconf: empty message")
	}
	if ss.dl != nil && ss.wtimeout > 0 {
		// A peer that stops reading must not hold the session (and its
		// slot among the user's sessions) for ever. The deadline is
		// cleared afterwards: an SSH connection's other channels write
		// on the same connection later.
		ss.dl.SetWriteDeadline(time.Now().Add(ss.wtimeout))
		defer ss.dl.SetWriteDeadline(time.Time{})
	}
	_, err := ss.w.Write(frame.Append(make([]byte, 0, len(b)+24), b, ss.fr.Chunked()))
	return err
}

// parseHello reads the client's hello (RFC 6241 §8.1): its capabilities.
// A client hello with a session-id is an error that ends the session.
func parseHello(b []byte) ([]string, error) {
	x, err := schema.ParseXML(b, schema.Limits{Depth: 8, Elements: 4096})
	if err != nil {
		return nil, err
	}
	if x.Name != "hello" || x.NS != NSBase {
		return nil, fmt.Errorf("<%s> where <hello> belongs", x.Name)
	}
	var caps []string
	for _, c := range x.Children {
		switch {
		case c.Name == "session-id" && c.NS == NSBase:
			return nil, errors.New("the client's hello carries a session-id (RFC 6241 §8.1)")
		case c.Name == "capabilities" && c.NS == NSBase:
			for _, cp := range c.Children {
				if cp.Name == "capability" {
					caps = append(caps, strings.TrimSpace(cp.Text))
				}
			}
		}
	}
	if len(caps) == 0 {
		return nil, errors.New("the client's hello lists no capabilities")
	}
	return caps, nil
}

// Sessions lists the ids of the open sessions, in order.
func (s *Server) Sessions() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.sessions))
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

// closeSessions ends every session over transport.
func (s *Server) closeSessions(transport string) {
	s.mu.Lock()
	var all []*session
	for _, ss := range s.sessions {
		if ss.transport == transport {
			all = append(all, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close()
	}
}

// acceptLoop accepts connections until ctx ends, handing each to handle
// with the release of its startup slot (called once it authenticated or
// failed). Accept errors (EMFILE when descriptors run out, say) are
// retried with backoff, as net/http does, and logged; they never end the
// listener. Connections over the startup limits are closed at once.
func (s *Server) acceptLoop(ctx context.Context, transport string, ln net.Listener, handle func(c net.Conn, release func())) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				// Stopping ends the sessions too, before Serve returns:
				// nothing is answered by a server that has stopped.
				s.closeSessions(transport)
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.quiet.Warn("accept failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		if s.draining.Load() {
			c.Close()
			continue
		}
		release, ok := s.gate.enter(c.RemoteAddr())
		if !ok {
			s.stats.droppedSessions.Add(1)
			s.quiet.Warn("connection dropped: too many unauthenticated connections", "remote", c.RemoteAddr().String(),
				"limit", s.gate.max, "per_source", s.gate.perSource)
			c.Close()
			continue
		}
		go handle(c, release)
	}
}

// gate bounds the connections that have not authenticated yet, in all
// and per source address, so that a flood of handshakes cannot take every
// descriptor or every CPU (OpenSSH MaxStartups).
type gate struct {
	mu             sync.Mutex
	total          int
	bySrc          map[string]int
	max, perSource int
}

func (g *gate) enter(a net.Addr) (func(), bool) {
	src := a.String()
	if h, _, err := net.SplitHostPort(src); err == nil {
		src = h
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= g.max || g.bySrc[src] >= g.perSource {
		return nil, false
	}
	g.total++
	g.bySrc[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.total--
			if g.bySrc[src]--; g.bySrc[src] == 0 {
				delete(g.bySrc, src)
			}
		})
	}, true
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
	s.busy.Add(1)
	defer s.busy.Add(-1)
	if s.draining.Load() {
		return rpcErrorReply(nil, &attester.RPCError{Type: "application", Tag: "resource-denied", Message: "the agent is stopping"}, nil)
	}
	reply, _ := s.handle(ctx, &session{id: s.nextID.Add(1), user: user}, rpc)
	return reply
}

// Drain prepares a shutdown (SIGTERM): from now on new connections are
// closed at once, and Drain returns when no RPC is being answered — a
// quote in the TPM finishes and its reply is written — or when ctx ends.
// The caller then stops the servers, which ends the sessions.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.busy.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("netconf: %d RPCs still running: %w", s.busy.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// MapCertToName maps a verified client chain to a user name with the
// cert-to-name rules (RFC 7589 §7); "" when none applies.
func MapCertToName(chains [][]*x509.Certificate, rules []CertToName) string {
	return mapCertToName(chains, rules)
}

// quietLog logs at most burst lines a second of what peers can cause
// (failed handshakes, dropped connections): a flood must not become a
// flood of log lines. What it holds back is counted and reported with
// the next line it lets through.
type quietLog struct {
	l          *slog.Logger
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
	burst      int
}

func newQuietLog(l *slog.Logger) *quietLog { return &quietLog{l: l, burst: 10} }

func (q *quietLog) log(level slog.Level, msg string, args ...any) {
	q.mu.Lock()
	now := time.Now()
	if now.Sub(q.window) >= time.Second {
		q.window, q.n = now, 0
	}
	if q.n >= q.burst {
		q.suppressed++
		q.mu.Unlock()
		return
	}
	q.n++
	if q.suppressed > 0 {
		args = append(args, "suppressed_lines", q.suppressed)
		q.suppressed = 0
	}
	q.mu.Unlock()
	q.l.Log(context.Background(), level, msg, args...)
}

func (q *quietLog) Warn(msg string, args ...any) { q.log(slog.LevelWarn, msg, args...) }
func (q *quietLog) Info(msg string, args ...any) { q.log(slog.LevelInfo, msg, args...) }
