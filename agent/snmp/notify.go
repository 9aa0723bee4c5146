package snmp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/pkg/mibdef"
)

// Target is a receiver of the agent's notifications, as a row of
// SNMP-TARGET-MIB's snmpTargetAddrTable with its snmpTargetParamsTable
// entry: an address, the USM user (at authPriv), and whether it gets
// traps or informs. Informs are acknowledged and retried; traps are
// sent once.
type Target struct {
	Addr    string // HOST:PORT (UDP)
	User    string // one of Config.Users
	Inform  bool
	Timeout time.Duration // an inform's wait for its acknowledgement (default 1.5 s, snmpTargetAddrTimeout's)
	Retries int           // an inform's retransmissions (default 3, snmpTargetAddrRetryCount's)
}

// Notification OIDs of SNMPv2-MIB (RFC 3418).
var (
	snmpTrapOID = oid{1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0}
	sysUpTime0  = oid(mibdef.SysUpTime)
)

const (
	pduInform = 0xa6
	pduTrap   = 0xa7
)

// notification is one SNMPv2 notification: its OID and its objects.
type notification struct {
	trap oid
	vbs  []varbind
}

// notifyQueue bounds the notifications waiting for one target; beyond
// it the oldest is dropped (and logged): a receiver that is down must not
// hold the agent's memory.
const notifyQueue = 64

// watch reads the TPM's state every WatchEvery and notifies the targets
// of what changed: rivTpmReset when resetCount differs from the last one
// recorded in StateFile (so a reboot is told once the agent is up
// again), rivPcrExtended with the PCRs that moved, rivLogGrown with a
// log's new length.
func (s *Server) watch(ctx context.Context) {
	var queues []chan notification
	for _, t := range s.cfg.Targets {
		q := make(chan notification, notifyQueue)
		queues = append(queues, q)
		go s.sender(ctx, t, q)
	}
	emit := func(n notification) {
		s.axNotification(n) // to the AgentX master, when a session is open
		for i, q := range queues {
			select {
			case q <- n:
				continue
			default:
			}
			select {
			case old := <-q:
				s.cfg.Logger.Warn("snmp: notification dropped: the target is not keeping up", "target", s.cfg.Targets[i].Addr, "notification", old.trap.String())
			default:
			}
			select {
			case q <- n:
			default:
			}
		}
	}
	var prev *attester.Status
	tick := time.NewTicker(s.cfg.WatchEvery)
	defer tick.Stop()
	for {
		cur, err := s.status(ctx)
		if err != nil && ctx.Err() != nil {
			return
		}
		if err != nil {
			s.cfg.Logger.Warn("snmp: reading the TPM for notifications failed", "err", err)
		} else {
			for _, n := range s.changes(prev, cur) {
				emit(n)
			}
			prev = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// startWatch runs watch once, for the life of ctx, and returns a wait
// for its end: Serve and AgentX return only once the watcher has stopped
// reading the TPM (whose owner closes it after them).
func (s *Server) startWatch(ctx context.Context) func() {
	s.watchOnce.Do(func() {
		s.watchDone = make(chan struct{})
		go func() { defer close(s.watchDone); s.watch(ctx) }()
	})
	return func() { <-s.watchDone }
}

// changes lists the notifications that cur calls for after prev (nil:
// the agent's first reading, compared with the reset count recorded).
func (s *Server) changes(prev, cur *attester.Status) []notification {
	var out []notification
	name := appendTLV(nil, tagOctets, []byte(s.cfg.Attester.Config().TPMName))
	gauge := func(v uint32) []byte { return appendUint(nil, tagGauge32, uint64(v)) }
	reset := notification{trap: oid(mibdef.TpmReset), vbs: []varbind{
		{oid(mibdef.TpmName.Child(0)), name}, {oid(mibdef.TpmResetCount.Child(0)), gauge(cur.Clock.ResetCount)},
		{oid(mibdef.TpmRestartCount.Child(0)), gauge(cur.Clock.RestartCount)},
	}}
	if prev == nil {
		if last, ok := s.lastReset(); !ok || last != cur.Clock.ResetCount {
			out = append(out, reset)
		}
		s.recordReset(cur.Clock.ResetCount)
		return out
	}
	if cur.Clock.ResetCount != prev.Clock.ResetCount {
		s.recordReset(cur.Clock.ResetCount)
		// The PCRs and logs start again: the reset says it all.
		return append(out, reset)
	}
	var moved []varbind
	for _, b := range cur.PCRs.Banks() {
		for _, i := range cur.PCRs.Indexes(b) {
			if v := cur.PCRs.Get(b, i); !bytes.Equal(v, prev.PCRs.Get(b, i)) {
				moved = append(moved, varbind{oid(mibdef.PcrValue.Child(uint32(b), uint32(i))), appendTLV(nil, tagOctets, v)})
			}
		}
	}
	if len(moved) > 0 {
		out = append(out, notification{trap: oid(mibdef.PcrExtended), vbs: moved})
	}
	for _, l := range cur.Logs {
		i := slices.IndexFunc(prev.Logs, func(p attester.LogStatus) bool { return p.Type == l.Type })
		if i >= 0 && l.Entries > prev.Logs[i].Entries {
			t := logCodes[l.Type]
			out = append(out, notification{trap: oid(mibdef.LogGrown), vbs: []varbind{
				{oid(mibdef.LogEntries.Child(t)), gauge(uint32(min(l.Entries, 1<<32-1)))},
				{oid(mibdef.LogLastDigest.Child(t)), appendTLV(nil, tagOctets, l.LastDigest)},
			}})
		}
	}
	return out
}

// lastReset is the TPM resetCount recorded by an earlier run.
func (s *Server) lastReset() (uint32, bool) {
	if s.cfg.StateFile == "" {
		return 0, false
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	return uint32(n), err == nil
}

func (s *Server) recordReset(n uint32) {
	if s.cfg.StateFile == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.StateFile), 0o750); err == nil {
		err = atomicfile.Write(s.cfg.StateFile, []byte(strconv.FormatUint(uint64(n), 10)+"\n"), 0o640)
		if err == nil {
			return
		}
	}
	s.cfg.Logger.Warn("snmp: cannot record the TPM reset count; the next start notifies a reset again", "file", s.cfg.StateFile)
}

// pdu encodes n as a Trap or Inform PDU: sysUpTime.0, snmpTrapOID.0,
// then its objects (RFC 3416 §4.2.6).
func (s *Server) notificationPDU(tag byte, reqID int64, n notification) []byte {
	vbs := [][]byte{
		seq(tagSequence, appendTLV(nil, tagOID, sysUpTime0.bytes()), appendUint(nil, tagTimeTicks, uint64(time.Since(s.start)/(10*time.Millisecond))&(1<<32-1))),
		seq(tagSequence, appendTLV(nil, tagOID, snmpTrapOID.bytes()), appendTLV(nil, tagOID, n.trap.bytes())),
	}
	for _, v := range n.vbs {
		vbs = append(vbs, seq(tagSequence, appendTLV(nil, tagOID, v.oid.bytes()), v.val))
	}
	return seq(tag, appendInt(nil, tagInteger, reqID), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence, vbs...))
}

// receiver is what an inform's sender knows of the receiving engine,
// which is authoritative for informs (RFC 3414 §3.1.1): its engine ID,
// boots and time, and the user's keys localized to it.
type receiver struct {
	engineID []byte
	boots    uint32
	etime    uint32
	at       time.Time // when etime was learned
	keys     userKeys
}

func (r *receiver) now() uint32 { return r.etime + uint32(time.Since(r.at)/time.Second) }

// sender delivers the notifications queued for one target until ctx ends.
func (s *Server) sender(ctx context.Context, t Target, q <-chan notification) {
	var conn net.Conn
	var rcv *receiver
	for {
		var n notification
		select {
		case <-ctx.Done():
			if conn != nil {
				conn.Close()
			}
			return
		case n = <-q:
		}
		if conn == nil {
			var err error
			if conn, err = (&net.Dialer{}).DialContext(ctx, "udp", t.Addr); err != nil {
				s.cfg.Logger.Warn("snmp: notification not sent", "target", t.Addr, "err", err)
				continue
			}
		}
		var err error
		if t.Inform {
			rcv, err = s.inform(ctx, conn, t, rcv, n)
		} else {
			err = s.trap(conn, t, n)
		}
		if err != nil {
			s.cfg.Logger.Warn("snmp: notification not delivered", "target", t.Addr, "notification", n.trap.String(), "err", err)
			// The next one starts afresh: a receiver that was not
			// listening (an ICMP port unreachable) may be now.
			conn.Close()
			conn = nil
		}
	}
}

func (s *Server) userKeys(name string) (userKeys, bool) {
	k, ok := (*s.users.Load())[name]
	return k, ok
}

// trap sends n once, authoritative itself (RFC 3414 §3.1.1: a trap's
// authoritative engine is its sender).
func (s *Server) trap(conn net.Conn, t Target, n notification) error {
	keys, ok := s.userKeys(t.User)
	if !ok {
		return fmt.Errorf("no SNMP user %q", t.User)
	}
	h := header{msgID: s.nextID(), flags: 3, engineID: s.engineID, boots: s.cfg.EngineBoots, etime: s.engineTime(), user: []byte(t.User), ctxEngine: s.engineID}
	_, err := conn.Write(s.message(h, &keys, s.notificationPDU(pduTrap, s.nextID(), n)))
	return err
}

func (s *Server) nextID() int64 {
	var b [4]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint32(b[:]) &^ (1 << 31))
}

// inform sends n until the receiver acknowledges it, discovering the
// receiving engine first (RFC 3414 §4) and again when it says the engine
// or its time is not what the agent thought.
func (s *Server) inform(ctx context.Context, conn net.Conn, t Target, rcv *receiver, n notification) (*receiver, error) {
	user, ok := (*s.rawUsers.Load())[t.User]
	if !ok {
		return rcv, fmt.Errorf("no SNMP user %q", t.User)
	}
	reqID := s.nextID()
	var lastErr error
	for try := 0; try <= t.Retries; try++ {
		if ctx.Err() != nil {
			return rcv, ctx.Err()
		}
		if rcv == nil {
			r, err := s.discover(conn, t, user)
			if err != nil {
				lastErr = err
				continue
			}
			rcv = r
		}
		h := header{msgID: s.nextID(), flags: 7, engineID: rcv.engineID, boots: rcv.boots, etime: rcv.now(), user: []byte(t.User), ctxEngine: s.engineID}
		if _, err := conn.Write(s.message(h, &rcv.keys, s.notificationPDU(pduInform, reqID, n))); err != nil {
			return rcv, err
		}
		m, err := s.await(conn, t.Timeout, h.msgID, &rcv.keys, rcv.engineID)
		switch {
		case err != nil:
			lastErr = err
		case m.pduTag == pduResponse && m.reqID == reqID:
			return rcv, nil
		case m.pduTag == pduReport && m.report.cmp(oid(mibdef.UsmStatsNotInTimeWindows)) == 0 && m.authentic:
			rcv.boots, rcv.etime, rcv.at = m.boots, m.etime, time.Now()
			lastErr = errors.New("the receiver's time window moved")
		case m.pduTag == pduReport:
			rcv, lastErr = nil, fmt.Errorf("the receiver reported %v", m.report)
		default:
			lastErr = fmt.Errorf("an unexpected PDU 0x%x", m.pduTag)
		}
	}
	return rcv, fmt.Errorf("no acknowledgement after %d tries: %w", t.Retries+1, lastErr)
}

// discover learns the receiving engine's ID, boots and time from the
// Report a request without an engine ID draws (RFC 3414 §4).
func (s *Server) discover(conn net.Conn, t Target, u User) (*receiver, error) {
	h := header{msgID: s.nextID(), flags: 4}
	probe := seq(pduGet, appendInt(nil, tagInteger, s.nextID()), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence))
	if _, err := conn.Write(s.message(h, nil, probe)); err != nil {
		return nil, err
	}
	m, err := s.await(conn, t.Timeout, h.msgID, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("engine discovery: %w", err)
	}
	if m.pduTag != pduReport || len(m.engineID) < 5 || len(m.engineID) > 32 {
		return nil, errors.New("engine discovery: no Report with an engine ID")
	}
	keys, err := localize(u, m.engineID)
	if err != nil {
		return nil, err
	}
	return &receiver{engineID: m.engineID, boots: m.boots, etime: m.etime, at: time.Now(), keys: keys}, nil
}

// reply is what the agent reads of a message a receiver sent back.
type reply struct {
	engineID     []byte
	boots, etime uint32
	authentic    bool
	pduTag       byte
	reqID        int64
	report       oid // a Report's first varbind
}

// await reads the reply to message msgID. A reply that claims to be
// authenticated is checked with keys (localized to engineID); one that
// fails is ignored, as a forged one would be.
func (s *Server) await(conn net.Conn, timeout time.Duration, msgID int64, keys *userKeys, engineID []byte) (*reply, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, maxMsg)
	for {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if m, err := parseReply(buf[:n], msgID, keys, engineID); err == nil {
			return m, nil
		} else {
			s.cfg.Logger.Debug("snmp: reply ignored", "err", err)
		}
	}
}

// parseReply decodes a Response or Report to message msgID.
func parseReply(pkt []byte, msgID int64, keys *userKeys, engineID []byte) (*reply, error) {
	msg, err := decodeMessage(pkt)
	if err != nil {
		return nil, err
	}
	if msg.msgID != msgID {
		return nil, fmt.Errorf("msgID %d, want %d", msg.msgID, msgID)
	}
	r := &reply{engineID: slices.Clone(msg.engineID), boots: uint32(msg.boots), etime: uint32(msg.etime)}
	authParams, privParams, dataTag, data := msg.authParams, msg.privParams, msg.dataTag, msg.data
	scoped := data
	if msg.flags&1 != 0 {
		if keys == nil || !bytes.Equal(r.engineID, engineID) || len(authParams) != authParamLen {
			return nil, errors.New("an authenticated reply the agent has no key for")
		}
		off := cap(pkt) - cap(authParams)
		zeroed := slices.Clone(pkt)
		clear(zeroed[off : off+authParamLen])
		if !hmac.Equal(authDigest(keys.auth, zeroed), authParams) {
			return nil, errors.New("wrong digest")
		}
		r.authentic = true
	}
	switch {
	case msg.flags&2 != 0 && r.authentic && dataTag == tagOctets:
		scoped = slices.Clone(data)
		if err := cfb(keys.priv, r.boots, r.etime, privParams, scoped, true); err != nil {
			return nil, err
		}
		d := decoder{scoped}
		if scoped, err = d.expect(tagSequence, "ScopedPDU"); err != nil {
			return nil, err
		}
	case msg.flags&2 == 0 && dataTag == tagSequence:
	default:
		return nil, errors.New("a scoped PDU the agent cannot read")
	}
	sc := decoder{scoped}
	sc.expect(tagOctets, "contextEngineID")
	sc.expect(tagOctets, "contextName")
	tag, pdu, err := sc.tlv()
	if err != nil {
		return nil, err
	}
	r.pduTag = tag
	if tag != pduResponse && tag != pduReport {
		return nil, fmt.Errorf("PDU 0x%x is no reply", tag)
	}
	pd := decoder{pdu}
	if r.reqID, err = pd.integer("request-id"); err != nil {
		return nil, err
	}
	pd.integer("error-status")
	pd.integer("error-index")
	list, err := pd.expect(tagSequence, "variable-bindings")
	if err != nil {
		return nil, err
	}
	if tag == pduReport {
		l := decoder{list}
		if vb, err := l.expect(tagSequence, "VarBind"); err == nil {
			v := decoder{vb}
			if ob, err := v.expect(tagOID, "name"); err == nil {
				r.report, _ = parseOID(ob)
			}
		}
	}
	return r, nil
}
