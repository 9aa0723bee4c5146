package snmp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/pkg/mibdef"
)

// AgentX (RFC 2741): the agent as a subagent of a master agent such as
// net-snmp's snmpd, the way network operating systems (SONiC, for one)
// gather their MIBs under one SNMP engine. The master does SNMP (its
// users, views and security); the subagent registers RIV-ATTESTATION-MIB
// and answers the master's Get, GetNext, GetBulk and the four phases of a
// Set, every varbind of a PDU (a Go AgentX library answered only the
// first), and sends its notifications as Notify-PDUs.

// AgentX PDU types (RFC 2741 §6.1).
const (
	axOpen       = 1
	axClose      = 2
	axRegister   = 3
	axGet        = 5
	axGetNext    = 6
	axGetBulk    = 7
	axTestSet    = 8
	axCommitSet  = 9
	axUndoSet    = 10
	axCleanupSet = 11
	axNotify     = 12
	axPing       = 13
	axResponse   = 18
)

// Header flags (§6.1).
const (
	axNonDefaultContext = 0x08
	axNetworkByteOrder  = 0x10
)

// AgentX errors beyond the SNMP ones (§6.2.16).
const (
	axParseError      = 266
	axProcessingError = 268
	axCommitFailed    = 14
)

// AgentX value types (§5.4).
const (
	axInteger      = 2
	axOctetString  = 4
	axNull         = 5
	axOID          = 6
	axCounter32    = 65
	axGauge32      = 66
	axTimeTicks    = 67
	axCounter64    = 70
	axNoSuchObj    = 128
	axNoSuchInst   = 129
	axEndOfMibView = 130
)

const (
	axHeaderLen  = 20
	axMaxPayload = 1 << 20 // a master's PDU; far above what a request holds
	axMaxOIDLen  = 128
)

// axHeader is the fixed header of every AgentX PDU.
type axHeader struct {
	typ, flags          byte
	session, tx, packet uint32
	order               binary.ByteOrder
}

// axRead reads one PDU: its header and payload.
func axRead(r *bufio.Reader) (axHeader, []byte, error) {
	var b [axHeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return axHeader{}, nil, err
	}
	if b[0] != 1 {
		return axHeader{}, nil, fmt.Errorf("agentx: version %d", b[0])
	}
	h := axHeader{typ: b[1], flags: b[2], order: binary.LittleEndian}
	if h.flags&axNetworkByteOrder != 0 {
		h.order = binary.BigEndian
	}
	h.session, h.tx, h.packet = h.order.Uint32(b[4:]), h.order.Uint32(b[8:]), h.order.Uint32(b[12:])
	n := h.order.Uint32(b[16:])
	if n > axMaxPayload || n%4 != 0 {
		return h, nil, fmt.Errorf("agentx: payload of %d octets", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// axPDU encodes a PDU in network byte order.
func axPDU(typ, flags byte, session, tx, packet uint32, payload []byte) []byte {
	b := make([]byte, axHeaderLen, axHeaderLen+len(payload))
	b[0], b[1], b[2] = 1, typ, flags|axNetworkByteOrder
	binary.BigEndian.PutUint32(b[4:], session)
	binary.BigEndian.PutUint32(b[8:], tx)
	binary.BigEndian.PutUint32(b[12:], packet)
	binary.BigEndian.PutUint32(b[16:], uint32(len(payload)))
	return append(b, payload...)
}

// axDecoder reads a payload in the byte order its header gives.
type axDecoder struct {
	b     []byte
	order binary.ByteOrder
	err   error
}

func (d *axDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("agentx: %s", what)
	}
	d.b = nil
}

func (d *axDecoder) bytes(n int, what string) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail(what + " truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *axDecoder) u16(what string) uint16 {
	b := d.bytes(2, what)
	if b == nil {
		return 0
	}
	return d.order.Uint16(b)
}

func (d *axDecoder) u32(what string) uint32 {
	b := d.bytes(4, what)
	if b == nil {
		return 0
	}
	return d.order.Uint32(b)
}

// oid reads an Object Identifier (§5.1) and its include flag.
func (d *axDecoder) oid(what string) (oid, bool) {
	h := d.bytes(4, what)
	if h == nil {
		return nil, false
	}
	n, prefix, include := int(h[0]), h[1], h[2] != 0
	if n > axMaxOIDLen {
		d.fail(what + ": too many sub-identifiers")
		return nil, false
	}
	var o oid
	if prefix != 0 {
		o = oid{1, 3, 6, 1, uint32(prefix)}
	}
	for range n {
		o = append(o, d.u32(what))
	}
	return o, include
}

// octets reads an Octet String (§5.3): a length, the octets, padding.
func (d *axDecoder) octets(what string) []byte {
	n := d.u32(what)
	if n > axMaxPayload {
		d.fail(what + ": too long")
		return nil
	}
	v := d.bytes(int(n), what)
	d.bytes(int((4-n%4)%4), what+" padding")
	return v
}

// axOIDBytes encodes o (§5.1), with the 1.3.6.1.X prefix compressed.
func axOIDBytes(b []byte, o oid, include bool) []byte {
	prefix := byte(0)
	if len(o) >= 5 && o[0] == 1 && o[1] == 3 && o[2] == 6 && o[3] == 1 && o[4] > 0 && o[4] < 256 {
		prefix, o = byte(o[4]), o[5:]
	}
	inc := byte(0)
	if include {
		inc = 1
	}
	b = append(b, byte(len(o)), prefix, inc, 0)
	for _, n := range o {
		b = binary.BigEndian.AppendUint32(b, n)
	}
	return b
}

func axOctets(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

// axVarbind encodes a varbind whose value is BER (as the view holds it)
// or one of the exception tags.
func axVarbind(b []byte, name oid, ber []byte) []byte {
	tag, content := ber[0], ber[2:]
	if len(ber) > 1 && ber[1]&0x80 != 0 {
		// Long form length: the view's values are what appendTLV wrote.
		n := int(ber[1] & 0x7f)
		content = ber[2+n:]
	}
	var typ uint16
	var data []byte
	switch tag {
	case tagInteger:
		v, _ := parseInt(content, "")
		typ, data = axInteger, binary.BigEndian.AppendUint32(nil, uint32(int32(v)))
	case tagOctets:
		typ, data = axOctetString, axOctets(nil, content)
	case tagOID:
		o, _ := parseOID(content)
		typ, data = axOID, axOIDBytes(nil, o, false)
	case tagCounter32, tagGauge32, tagTimeTicks:
		v, _ := parseInt(content, "")
		typ = map[byte]uint16{tagCounter32: axCounter32, tagGauge32: axGauge32, tagTimeTicks: axTimeTicks}[tag]
		data = binary.BigEndian.AppendUint32(nil, uint32(v))
	case tagCounter64:
		v, _ := parseInt(content, "")
		typ, data = axCounter64, binary.BigEndian.AppendUint64(nil, uint64(v))
	case tagNoSuchObject:
		typ = axNoSuchObj
	case tagNoSuchInstance:
		typ = axNoSuchInst
	case tagEndOfMibView:
		typ = axEndOfMibView
	default:
		typ = axNull
	}
	b = binary.BigEndian.AppendUint16(b, typ)
	b = append(b, 0, 0)
	b = axOIDBytes(b, name, false)
	return append(b, data...)
}

// axSetVarbind reads a varbind of a TestSet as the SET code takes it:
// its value re-encoded as the BER contents of the matching SNMP type.
func (d *axDecoder) setVarbind() setVarbind {
	typ := d.u16("varbind type")
	d.u16("varbind reserved")
	name, _ := d.oid("varbind name")
	vb := setVarbind{oid: name}
	switch typ {
	case axInteger:
		vb.tag, vb.val = tagInteger, intBytes(int64(int32(d.u32("Integer"))))
	case axCounter32, axGauge32, axTimeTicks:
		vb.tag = map[uint16]byte{axCounter32: tagCounter32, axGauge32: tagGauge32, axTimeTicks: tagTimeTicks}[typ]
		vb.val = appendUint(nil, vb.tag, uint64(d.u32("Unsigned32")))[2:]
	case axOctetString:
		vb.tag, vb.val = tagOctets, d.octets("Octet String")
	case axOID:
		o, _ := d.oid("OID value")
		vb.tag, vb.val = tagOID, o.bytes()
	case axCounter64:
		b := d.bytes(8, "Counter64")
		vb.tag = tagCounter64
		if b != nil {
			vb.val = appendUint(nil, tagCounter64, binary.BigEndian.Uint64(b))[2:]
		}
	case axNull, axNoSuchObj, axNoSuchInst, axEndOfMibView:
		vb.tag = tagNull
	default:
		d.fail(fmt.Sprintf("varbind type %d", typ))
	}
	return vb
}

// AgentX runs the agent as an AgentX subagent of the master at address
// (net-snmp's agentXSocket: "tcp:HOST:PORT", or a Unix socket path) until
// ctx ends, reconnecting when the master goes away (snmpd restarted).
func (s *Server) AgentX(ctx context.Context, address string) error {
	network, addr := "unix", address
	if a, ok := strings.CutPrefix(address, "tcp:"); ok {
		network, addr = "tcp", a
	}
	s.axMu.Lock()
	s.axRunning = true
	s.axMu.Unlock()
	defer s.startWatch(ctx)()
	wait := 100 * time.Millisecond
	for {
		err := s.agentxSession(ctx, network, addr)
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Logger.Warn("agentx: session with the master ended; reconnecting", "master", address, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// axTimeout is how long the master waits for the subagent (seconds, in
// the Open-PDU): a SET's quote is asynchronous, so replies are fast.
const axTimeout = 5

// agentxSession is one connection to the master: open, register, serve.
func (s *Server) agentxSession(ctx context.Context, network, addr string) error {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Write(b)
		return err
	}
	var packet atomic.Uint32
	call := func(typ byte, session uint32, payload []byte) (uint32, error) {
		if err := write(axPDU(typ, 0, session, 0, packet.Add(1), payload)); err != nil {
			return 0, err
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, p, err := axRead(r)
		conn.SetReadDeadline(time.Time{})
		if err != nil {
			return 0, err
		}
		d := axDecoder{b: p, order: h.order}
		d.u32("sysUpTime")
		if e := d.u16("error"); e != 0 || h.typ != axResponse || d.err != nil {
			return 0, fmt.Errorf("the master refused PDU %d: error %d %v", typ, e, d.err)
		}
		return h.session, nil
	}
	open := append([]byte{axTimeout, 0, 0, 0}, axOIDBytes(nil, oid(mibdef.RIVAgent), false)...)
	open = axOctets(open, []byte("RIV agent: RIV-ATTESTATION-MIB (TPM 2.0 attestation)"))
	session, err := call(axOpen, 0, open)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	reg := append([]byte{axTimeout, 127, 0, 0}, axOIDBytes(nil, oid(mibdef.RIVAttestationMIB), false)...)
	if _, err := call(axRegister, session, reg); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	s.cfg.Logger.Info("agentx: registered RIV-ATTESTATION-MIB with the master", "master", addr, "session", session)
	notify := func(payload []byte) error {
		return write(axPDU(axNotify, 0, session, 0, packet.Add(1), payload))
	}
	s.axMu.Lock()
	s.axNotify = notify
	waiting := s.axPending
	s.axPending = nil
	s.axMu.Unlock()
	for _, n := range waiting {
		s.axSend(notify, n)
	}
	defer func() {
		s.axMu.Lock()
		s.axNotify = nil
		s.axMu.Unlock()
	}()
	var pending []setVarbind // between TestSet and CommitSet
	for {
		h, p, err := axRead(r)
		if err != nil {
			return err
		}
		reply := func(status, index uint16, vbs []byte) error {
			up := uint32(time.Since(s.start) / (10 * time.Millisecond))
			pl := binary.BigEndian.AppendUint32(nil, up)
			pl = binary.BigEndian.AppendUint16(pl, status)
			pl = binary.BigEndian.AppendUint16(pl, index)
			return write(axPDU(axResponse, 0, h.session, h.tx, h.packet, append(pl, vbs...)))
		}
		if h.typ == axResponse {
			continue // to a Notify or Ping
		}
		st, idx, vbs, answer, err := s.axHandle(ctx, h, p, &pending)
		if err != nil {
			return err
		}
		if !answer {
			continue
		}
		if err := reply(st, idx, vbs); err != nil {
			return err
		}
	}
}

// axHandle answers one PDU from the master: the response's error-status,
// error-index and varbinds, or no response (CleanupSet), or an error
// that ends the session (Close). pending holds a TestSet's varbinds until
// its CommitSet.
func (s *Server) axHandle(ctx context.Context, h axHeader, p []byte, pending *[]setVarbind) (st, idx uint16, vbs []byte, answer bool, err error) {
	d := axDecoder{b: p, order: h.order}
	if h.flags&axNonDefaultContext != 0 {
		// The MIB lives in the default context only.
		return uint16(errGen), 1, nil, true, nil
	}
	switch h.typ {
	case axGet, axGetNext, axGetBulk:
		st, idx, vbs = s.axRead(ctx, h.typ, &d)
	case axTestSet:
		*pending = (*pending)[:0]
		for len(d.b) > 0 && d.err == nil {
			*pending = append(*pending, d.setVarbind())
		}
		if d.err != nil {
			return axParseError, 0, nil, true, nil
		}
		if code, at := s.testSet("agentx", *pending); code != 0 {
			st, idx = uint16(code), uint16(at)
		}
	case axCommitSet:
		if code, at := s.set(ctx, "agentx", *pending); code != 0 {
			st, idx = axCommitFailed, uint16(at)
		}
		*pending = nil
	case axUndoSet, axCleanupSet:
		// The commit of a challenge cannot fail halfway: nothing to undo,
		// and the pending set is dropped.
		*pending = nil
		if h.typ == axCleanupSet {
			return 0, 0, nil, false, nil // CleanupSet has no response (§7.2.4.4)
		}
	case axClose:
		return 0, 0, nil, false, errors.New("the master closed the session")
	default:
		st = axProcessingError
	}
	if d.err != nil && st == 0 {
		st = axParseError
	}
	return st, idx, vbs, true, nil
}

// axRead answers a Get, GetNext or GetBulk: every search range of it.
func (s *Server) axRead(ctx context.Context, typ byte, d *axDecoder) (uint16, uint16, []byte) {
	nonRep, maxRep := 0, 1
	if typ == axGetBulk {
		nonRep, maxRep = int(d.u16("non_repeaters")), int(min(d.u16("max_repetitions"), maxRepetitions))
	}
	type searchRange struct {
		start, end oid
		include    bool
	}
	var ranges []searchRange
	for len(d.b) > 0 && d.err == nil {
		start, inc := d.oid("start")
		end, _ := d.oid("end")
		ranges = append(ranges, searchRange{start, end, inc})
		if len(ranges) > maxVarbinds {
			return axProcessingError, 0, nil
		}
	}
	if d.err != nil {
		return axParseError, 0, nil
	}
	v, err := s.view(ctx)
	if err != nil {
		s.cfg.Logger.Warn("agentx: reading the TPM failed", "err", err)
		return uint16(errGen), 1, nil
	}
	mib := oid(mibdef.RIVAttestationMIB)
	next := func(r searchRange) (oid, []byte) {
		if r.include {
			if val, found, _ := v.get(r.start); found && r.start.hasPrefix(mib) {
				return r.start, val
			}
		}
		vb, ok := v.next(r.start)
		if !ok || !vb.oid.hasPrefix(mib) || len(r.end) > 0 && vb.oid.cmp(r.end) >= 0 {
			return r.start, []byte{tagEndOfMibView, 0}
		}
		return vb.oid, vb.val
	}
	var out []byte
	switch typ {
	case axGet:
		for _, r := range ranges {
			val, found, exists := v.get(r.start)
			switch {
			case found && r.start.hasPrefix(mib):
			case exists:
				val = []byte{tagNoSuchInstance, 0}
			default:
				val = []byte{tagNoSuchObject, 0}
			}
			out = axVarbind(out, r.start, val)
		}
	case axGetNext:
		for _, r := range ranges {
			o, val := next(r)
			out = axVarbind(out, o, val)
		}
	case axGetBulk:
		nonRep = min(nonRep, len(ranges))
		for _, r := range ranges[:nonRep] {
			o, val := next(r)
			out = axVarbind(out, o, val)
		}
		cur := append([]searchRange(nil), ranges[nonRep:]...)
		for rep := 0; rep < maxRep && len(out) < maxMsg-1024; rep++ {
			for k := range cur {
				o, val := next(cur[k])
				out = axVarbind(out, o, val)
				cur[k].start, cur[k].include = o, false
			}
		}
	}
	return 0, 0, out
}

// axNotification sends n to the master as a Notify-PDU (§6.2.10), which
// it turns into traps and informs to its own targets. Without a session
// (the agent starts before the master, or the master restarts) the last
// notifyQueue of them wait for the next one: the reset that a start
// finds is told once the master is there.
func (s *Server) axNotification(n notification) {
	s.axMu.Lock()
	send := s.axNotify
	if send == nil {
		if s.axRunning {
			if len(s.axPending) == notifyQueue {
				s.axPending = s.axPending[1:]
			}
			s.axPending = append(s.axPending, n)
		}
		s.axMu.Unlock()
		return
	}
	s.axMu.Unlock()
	s.axSend(send, n)
}

func (s *Server) axSend(send func([]byte) error, n notification) {
	pl := axVarbind(nil, snmpTrapOID, appendTLV(nil, tagOID, n.trap.bytes()))
	for _, v := range n.vbs {
		pl = axVarbind(pl, v.oid, v.val)
	}
	if err := send(pl); err != nil {
		s.cfg.Logger.Warn("agentx: notification not sent", "notification", n.trap.String(), "err", err)
	}
}
