// Package snmp is the agent's embedded SNMPv3 agent: RIV-ATTESTATION-MIB
// (mibs/) over UDP, with the User-based Security Model at authPriv only
// (HMAC-SHA-256-192 and AES-128). Engine discovery gets its
// Report; every other request below authPriv, from an unknown user, with
// a wrong digest or outside the time window gets the RFC 3414 Report and
// nothing else. SNMPv1 and v2c messages are dropped.
//
// A manager notices change cheaply (PCR values, TPM reset count, log
// lengths), sets a challenge in rivChallengeTable and reads its quote
// from rivQuoteTable, and walks the log entries in rivEventTable from the
// last one it holds. The only writable objects are the challenge table's.
package snmp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/mibdef"
)

// Config configures a Server.
type Config struct {
	Attester *attester.Attester
	Users    []User
	// EngineID identifies this SNMP engine (RFC 3411 SnmpEngineID);
	// default: the RFC 3411 text format with Name.
	EngineID []byte
	// Name goes into the default engine ID (e.g. the device serial).
	Name string
	// EngineBoots must grow every time the agent starts (RFC 3414 §2.2).
	// With BootsFile set, the count kept there is incremented and saved
	// by New (this field is then ignored); otherwise the caller persists
	// it. Default 1.
	EngineBoots uint32
	BootsFile   string
	// The system group (SNMPv2-MIB, RFC 3418) NMS discovery reads:
	// sysDescr (default: the agent and its TPM), sysContact, sysName
	// (default Name), sysLocation.
	SysDescr, SysContact, SysName, SysLocation string
	// CacheFor reuses one reading of the TPM and of the logs for a walk
	// (default 2 s).
	CacheFor time.Duration
	// ChallengeLifetime is how long a row of rivChallengeTable lives
	// (default 5 min); ChallengeMaxRows how many it holds (default 64).
	ChallengeLifetime time.Duration
	ChallengeMaxRows  int
	// Targets receive the notifications (rivTpmReset, rivPcrExtended,
	// rivLogGrown); the TPM is read for them every WatchEvery (default
	// 5 s). StateFile keeps the TPM reset count the agent last saw, so
	// that a reboot is notified once the agent runs again.
	Targets    []Target
	WatchEvery time.Duration
	StateFile  string
	// AgentXOnly is an engine that serves only as an AgentX subagent (no
	// UDP listener): it needs no users of its own, the master has them.
	AgentXOnly bool
	Logger     *slog.Logger
}

// Server is an SNMPv3 agent.
type Server struct {
	cfg      Config
	engineID []byte
	users    atomic.Pointer[map[string]userKeys]
	rawUsers atomic.Pointer[map[string]User] // for keys localized to an inform's receiver
	start    time.Time
	salt     atomic.Uint64
	status   func(context.Context) (*attester.Status, error)
	logs     func(context.Context) *events

	mu     sync.Mutex
	snap   []varbind
	snapAt time.Time
	ev     *events
	evAt   time.Time

	chal *challenges

	// The AgentX session's Notify sender (nil when none is open), and the
	// watcher of notifications, run once for Serve and AgentX alike.
	axMu      sync.Mutex
	axNotify  func(payload []byte) error
	axRunning bool           // AgentX runs: notifications wait for a session
	axPending []notification // those waiting
	watchOnce sync.Once
	watchDone chan struct{}

	// usmStats (RFC 3414 §5), snmpUnknownContexts, and the SNMPv2-MIB
	// snmp group (RFC 3418); zero backs the counters of what this agent
	// never does (communities, proxies, replies too big even empty).
	unsupportedSecLevels, notInTimeWindows, unknownUserNames, unknownEngineIDs, wrongDigests, decryptionErrors, unknownContexts atomic.Uint32
	inPkts, badVersions, asnParseErrs, zero                                                                                     atomic.Uint32
}

// enterprise is the RFC 5612 documentation enterprise number, used in the
// default engine ID until the project has its own.
const enterprise = 32473

// DefaultEngineID is the engine ID of an agent named name (Config.Name;
// "riv" when empty) without Config.EngineID: the RFC 3411 text format,
// the name cut to 27 octets. A receiver of its traps is told it.
func DefaultEngineID(name string) []byte {
	if name == "" {
		name = "riv"
	}
	id := append(binary.BigEndian.AppendUint32(nil, 0x80000000|enterprise), 4)
	return append(id, name[:min(len(name), 27)]...)
}

// New returns a server with its users' keys localized to the engine.
func New(cfg Config) (*Server, error) {
	if cfg.Attester == nil {
		return nil, errors.New("snmp: attester is required")
	}
	if len(cfg.Users) == 0 && !cfg.AgentXOnly {
		return nil, errors.New("snmp: at least one user is required (authPriv only)")
	}
	if cfg.BootsFile != "" {
		b, err := nextBoots(cfg.BootsFile)
		if err != nil {
			return nil, err
		}
		cfg.EngineBoots = b
	}
	if cfg.EngineBoots == 0 {
		cfg.EngineBoots = 1
	}
	if cfg.SysName == "" {
		cfg.SysName = cfg.Name
	}
	if cfg.SysDescr == "" {
		cfg.SysDescr = "RIV agent (remote integrity verification, RFC 9683), TPM " + cfg.Attester.Config().TPMName
		if m := cfg.Attester.Config().Manufacturer; m != "" {
			cfg.SysDescr += " by " + m
		}
	}
	if cfg.CacheFor == 0 {
		cfg.CacheFor = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ChallengeLifetime <= 0 {
		cfg.ChallengeLifetime = 5 * time.Minute
	}
	if cfg.ChallengeMaxRows <= 0 {
		cfg.ChallengeMaxRows = 64
	}
	if cfg.WatchEvery <= 0 {
		cfg.WatchEvery = 5 * time.Second
	}
	for i, t := range cfg.Targets {
		if !slices.ContainsFunc(cfg.Users, func(u User) bool { return u.Name == t.User }) {
			return nil, fmt.Errorf("snmp: notification target %s: no user %q", t.Addr, t.User)
		}
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			return nil, fmt.Errorf("snmp: notification target %q: %w", t.Addr, err)
		}
		if t.Retries < 0 {
			return nil, fmt.Errorf("snmp: notification target %s: retries %d", t.Addr, t.Retries)
		}
		if t.Timeout <= 0 {
			cfg.Targets[i].Timeout = 1500 * time.Millisecond
		}
	}
	s := &Server{cfg: cfg, engineID: cfg.EngineID, start: time.Now(), status: cfg.Attester.Status,
		logs: func(ctx context.Context) *events { return readEvents(ctx, cfg.Attester) },
		chal: &challenges{lifetime: cfg.ChallengeLifetime, maxRows: cfg.ChallengeMaxRows, rows: map[uint32]*challenge{}}}
	if len(s.engineID) == 0 {
		s.engineID = DefaultEngineID(cfg.Name)
	}
	if len(s.engineID) < 5 || len(s.engineID) > 32 {
		return nil, fmt.Errorf("snmp: engine ID of %d bytes, want 5-32", len(s.engineID))
	}
	if err := s.SetUsers(cfg.Users); err != nil {
		return nil, err
	}
	var seed [8]byte
	rand.Read(seed[:])
	s.salt.Store(binary.BigEndian.Uint64(seed[:]))
	return s, nil
}

// SetUsers replaces the USM users (a reload): requests already being
// answered finish with the keys they started with.
func (s *Server) SetUsers(users []User) error {
	if len(users) == 0 && !s.cfg.AgentXOnly {
		return errors.New("snmp: at least one user is required (authPriv only)")
	}
	m := make(map[string]userKeys, len(users))
	raw := make(map[string]User, len(users))
	for _, u := range users {
		if u.Name == "" || len(u.Name) > 32 {
			return fmt.Errorf("snmp: user name %q must have 1-32 characters", u.Name)
		}
		k, err := localize(u, s.engineID)
		if err != nil {
			return err
		}
		m[u.Name] = k
		raw[u.Name] = u
	}
	s.users.Store(&m)
	s.rawUsers.Store(&raw)
	return nil
}

// EngineID returns the engine ID managers discover.
func (s *Server) EngineID() []byte { return s.engineID }

// Serve answers requests on pc until ctx ends.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	if len(s.cfg.Targets) > 0 {
		wait := s.startWatch(ctx)
		defer func() {
			// A Serve that fails leaves the watcher to its context.
			if ctx.Err() != nil {
				wait()
			}
		}()
	}
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if resp := s.handle(ctx, buf[:n]); resp != nil {
			pc.WriteTo(resp, addr)
		}
	}
}

func (s *Server) engineTime() uint32 { return uint32(time.Since(s.start) / time.Second) }

// maxMsg is the largest message this agent sends or accepts (UDP over
// IPv4 without fragmentation limits aside).
const maxMsg = 65507

// inbound is what a request's header says.
type inbound struct {
	msgID, maxSize int64
	reportable     bool
	user           []byte
	reqID          int64
}

// handle processes one datagram and returns the reply, or nil to drop it.
func (s *Server) handle(ctx context.Context, pkt []byte) []byte {
	s.inPkts.Add(1)
	reply, err := s.process(ctx, pkt)
	if errors.Is(err, errBER) {
		s.asnParseErrs.Add(1)
	}
	if err != nil {
		s.cfg.Logger.Debug("snmp request dropped", "err", err)
		return nil
	}
	return reply
}

func (s *Server) process(ctx context.Context, pkt []byte) ([]byte, error) {
	msg, err := decodeMessage(pkt)
	if errors.Is(err, errVersion) {
		s.badVersions.Add(1)
	}
	if err != nil {
		return nil, err
	}
	in := &inbound{msgID: msg.msgID, maxSize: msg.maxSize, reportable: msg.flags&4 != 0, user: msg.user}
	authFlag, privFlag := msg.flags&1 != 0, msg.flags&2 != 0
	engineID, boots, etime, authParams, privParams, dataTag, data := msg.engineID, msg.boots, msg.etime, msg.authParams, msg.privParams, msg.dataTag, msg.data
	// A plaintext scoped PDU's request-id goes into Reports.
	if !privFlag && dataTag == tagSequence {
		in.reqID = plainRequestID(data)
	}

	// RFC 3414 §3.2, in its order.
	if !bytes.Equal(engineID, s.engineID) {
		s.unknownEngineIDs.Add(1)
		return s.report(in, nil, mibdef.UsmStatsUnknownEngineIDs, s.unknownEngineIDs.Load())
	}
	keys, ok := (*s.users.Load())[string(in.user)]
	if !ok {
		s.unknownUserNames.Add(1)
		return s.report(in, nil, mibdef.UsmStatsUnknownUserNames, s.unknownUserNames.Load())
	}
	if !authFlag || !privFlag {
		s.unsupportedSecLevels.Add(1)
		return s.report(in, nil, mibdef.UsmStatsUnsupportedSecLevels, s.unsupportedSecLevels.Load())
	}
	if len(authParams) != authParamLen {
		s.wrongDigests.Add(1)
		return s.report(in, nil, mibdef.UsmStatsWrongDigests, s.wrongDigests.Load())
	}
	// The digest covers the whole message with its own field zeroed;
	// authParams is a slice of pkt, so its offset is known.
	off := cap(pkt) - cap(authParams)
	zeroed := slices.Clone(pkt)
	clear(zeroed[off : off+authParamLen])
	if !hmac.Equal(authDigest(keys.auth, zeroed), authParams) {
		s.wrongDigests.Add(1)
		return s.report(in, nil, mibdef.UsmStatsWrongDigests, s.wrongDigests.Load())
	}
	if now := int64(s.engineTime()); boots != int64(s.cfg.EngineBoots) || etime < now-150 || etime > now+150 {
		s.notInTimeWindows.Add(1)
		return s.report(in, &keys, mibdef.UsmStatsNotInTimeWindows, s.notInTimeWindows.Load())
	}
	if dataTag != tagOctets {
		s.decryptionErrors.Add(1)
		return s.report(in, nil, mibdef.UsmStatsDecryptionErrors, s.decryptionErrors.Load())
	}
	plain := slices.Clone(data)
	if err := cfb(keys.priv, uint32(boots), uint32(etime), privParams, plain, true); err != nil {
		s.decryptionErrors.Add(1)
		return s.report(in, nil, mibdef.UsmStatsDecryptionErrors, s.decryptionErrors.Load())
	}
	sd := decoder{plain}
	scoped, err := sd.expect(tagSequence, "ScopedPDU")
	if err != nil {
		s.decryptionErrors.Add(1)
		return s.report(in, nil, mibdef.UsmStatsDecryptionErrors, s.decryptionErrors.Load())
	}
	sc := decoder{scoped}
	if _, err := sc.expect(tagOctets, "contextEngineID"); err != nil {
		return nil, err
	}
	ctxName, err := sc.expect(tagOctets, "contextName")
	if err != nil {
		return nil, err
	}
	pduTag, pdu, err := sc.tlv()
	if err != nil {
		return nil, fmt.Errorf("PDU: %w", err)
	}
	in.reqID = 0
	if len(ctxName) != 0 {
		s.unknownContexts.Add(1)
		in.reqID = plainPDURequestID(pdu)
		return s.reportLevel(in, &keys, true, mibdef.SnmpUnknownContexts, s.unknownContexts.Load())
	}
	resp, err := s.respond(ctx, in, pduTag, pdu)
	if err != nil || resp == nil {
		return nil, err
	}
	return s.wrap(in, &keys, true, resp), nil
}

// wireMsg is an SNMPv3 message as sent (RFC 3412 §6): its header and USM
// security parameters (RFC 3414 §2.4) decoded, its msgData not.
type wireMsg struct {
	msgID, maxSize         int64
	flags                  byte
	engineID, user         []byte
	boots, etime           int64
	authParams, privParams []byte // slices of the packet: authParams' offset is known
	dataTag                byte
	data                   []byte
}

// errVersion is a message of another SNMP version than 3.
var errVersion = errors.New("only SNMPv3 is served")

// decodeMessage decodes the parts of a message that every SNMPv3 message
// has, with RFC 3412's and 3414's bounds: the agent's requests and the
// replies to its informs alike.
func decodeMessage(pkt []byte) (*wireMsg, error) {
	if len(pkt) > maxMsg {
		return nil, errors.New("message too large")
	}
	top := decoder{pkt}
	body, err := top.expect(tagSequence, "message")
	if err != nil {
		return nil, err
	}
	if !top.empty() {
		return nil, fmt.Errorf("%w: bytes after the message", errBER)
	}
	m := decoder{body}
	ver, err := m.integer("msgVersion")
	if err != nil {
		return nil, err
	}
	if ver != 3 {
		return nil, fmt.Errorf("SNMP version %d: %w", ver+1, errVersion)
	}
	hdr, err := m.expect(tagSequence, "msgGlobalData")
	if err != nil {
		return nil, err
	}
	h := decoder{hdr}
	w := &wireMsg{}
	if w.msgID, err = h.nonNegative("msgID"); err != nil {
		return nil, err
	}
	if w.maxSize, err = h.nonNegative("msgMaxSize"); err != nil {
		return nil, err
	}
	if w.maxSize < 484 {
		return nil, fmt.Errorf("msgMaxSize %d below 484", w.maxSize)
	}
	flags, err := h.expect(tagOctets, "msgFlags")
	if err != nil || len(flags) != 1 {
		return nil, fmt.Errorf("msgFlags: %v", err)
	}
	w.flags = flags[0]
	model, err := h.integer("msgSecurityModel")
	if err != nil || model != 3 {
		return nil, fmt.Errorf("security model %d: only USM (3) is served (%v)", model, err)
	}
	if w.flags&2 != 0 && w.flags&1 == 0 {
		return nil, errors.New("privacy without authentication")
	}
	spRaw, err := m.expect(tagOctets, "msgSecurityParameters")
	if err != nil {
		return nil, err
	}
	spd := decoder{spRaw}
	spSeq, err := spd.expect(tagSequence, "UsmSecurityParameters")
	if err != nil {
		return nil, err
	}
	p := decoder{spSeq}
	if w.engineID, err = p.expect(tagOctets, "msgAuthoritativeEngineID"); err != nil {
		return nil, err
	}
	if w.boots, err = p.nonNegative("msgAuthoritativeEngineBoots"); err != nil {
		return nil, err
	}
	if w.etime, err = p.nonNegative("msgAuthoritativeEngineTime"); err != nil {
		return nil, err
	}
	if w.user, err = p.expect(tagOctets, "msgUserName"); err != nil {
		return nil, err
	}
	if w.authParams, err = p.expect(tagOctets, "msgAuthenticationParameters"); err != nil {
		return nil, err
	}
	if w.privParams, err = p.expect(tagOctets, "msgPrivacyParameters"); err != nil {
		return nil, err
	}
	if len(w.engineID) > 32 || len(w.user) > 32 {
		return nil, errors.New("engine ID or user name longer than 32")
	}
	if w.dataTag, w.data, err = m.tlv(); err != nil {
		return nil, fmt.Errorf("msgData: %w", err)
	}
	if !m.empty() {
		return nil, errors.New("bytes after msgData")
	}
	return w, nil
}

// plainRequestID digs the request-id out of a plaintext scoped PDU (0
// when it cannot).
func plainRequestID(scoped []byte) int64 {
	d := decoder{scoped}
	d.expect(tagOctets, "")
	d.expect(tagOctets, "")
	_, pdu, err := d.tlv()
	if err != nil {
		return 0
	}
	return plainPDURequestID(pdu)
}

func plainPDURequestID(pdu []byte) int64 {
	d := decoder{pdu}
	id, _ := d.integer("")
	return id
}

// report answers a failed check with a Report PDU carrying the counter
// (RFC 3414 §3.2): unauthenticated, except notInTimeWindows, which is
// authenticated with the user's key (keys != nil).
func (s *Server) report(in *inbound, keys *userKeys, counter mibdef.OID, value uint32) ([]byte, error) {
	return s.reportLevel(in, keys, false, counter, value)
}

func (s *Server) reportLevel(in *inbound, keys *userKeys, priv bool, counter mibdef.OID, value uint32) ([]byte, error) {
	if !in.reportable {
		return nil, errors.New("check failed on a message that wants no report")
	}
	vb := seq(tagSequence, appendTLV(nil, tagOID, oid(counter).bytes()), appendUint(nil, tagCounter32, uint64(value)))
	pdu := seq(pduReport, appendInt(nil, tagInteger, in.reqID), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence, vb))
	return s.wrap(in, keys, priv, pdu), nil
}

// wrap builds the outgoing message around pdu: authenticated (and, with
// priv, encrypted) when keys are given.
func (s *Server) wrap(in *inbound, keys *userKeys, priv bool, pdu []byte) []byte {
	var flags byte
	if keys != nil {
		flags |= 1
		if priv {
			flags |= 2
		}
	}
	return s.message(header{msgID: in.msgID, flags: flags, engineID: s.engineID, boots: s.cfg.EngineBoots, etime: s.engineTime(), user: in.user, ctxEngine: s.engineID}, keys, pdu)
}

// header is what a message says about itself: its msgGlobalData and the
// USM parameters of the authoritative engine (this one for responses
// and traps, the receiver for informs).
type header struct {
	msgID        int64
	flags        byte // 1 auth, 2 priv, 4 reportable
	engineID     []byte
	boots, etime uint32
	user         []byte
	ctxEngine    []byte // the scoped PDU's contextEngineID
}

// message encodes a message with pdu, authenticating and encrypting it
// as h.flags ask with keys localized to h.engineID.
func (s *Server) message(h header, keys *userKeys, pdu []byte) []byte {
	scoped := seq(tagSequence, appendTLV(nil, tagOctets, h.ctxEngine), appendTLV(nil, tagOctets, nil), pdu)
	var authParams, privParams []byte
	msgData := scoped
	if h.flags&1 != 0 {
		authParams = make([]byte, authParamLen)
		if h.flags&2 != 0 {
			privParams = binary.BigEndian.AppendUint64(nil, s.salt.Add(1))
			enc := slices.Clone(scoped)
			cfb(keys.priv, h.boots, h.etime, privParams, enc, false)
			msgData = appendTLV(nil, tagOctets, enc)
		}
	}
	head := [][]byte{
		appendTLV(nil, tagOctets, h.engineID),
		appendInt(nil, tagInteger, int64(h.boots)),
		appendInt(nil, tagInteger, int64(h.etime)),
		appendTLV(nil, tagOctets, h.user),
	}
	authTLV := appendTLV(nil, tagOctets, authParams)
	sp := seq(tagSequence, head[0], head[1], head[2], head[3], authTLV, appendTLV(nil, tagOctets, privParams))
	spOct := appendTLV(nil, tagOctets, sp)
	hdr := seq(tagSequence, appendInt(nil, tagInteger, h.msgID), appendInt(nil, tagInteger, maxMsg), appendTLV(nil, tagOctets, []byte{h.flags}), appendInt(nil, tagInteger, 3))
	msg := seq(tagSequence, appendInt(nil, tagInteger, 3), hdr, spOct, msgData)
	if h.flags&1 != 0 {
		prefix := 0
		for _, p := range head {
			prefix += len(p)
		}
		seqHdr := len(sp) - (prefix + len(authTLV) + 2 + len(privParams))
		off := len(msg) - len(msgData) - len(spOct) + (len(spOct) - len(sp)) + seqHdr + prefix + 2
		copy(msg[off:], authDigest(keys.auth, msg))
	}
	return msg
}
