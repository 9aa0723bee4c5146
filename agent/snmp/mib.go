package snmp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/pkg/mibdef"
)

// varbind is one object instance with its value, BER-encoded.
type varbind struct {
	oid oid
	val []byte
}

// A source serves some of the MIB's instances.
type source interface {
	// get returns the value of instance o; exists says whether o lies
	// within an object type the source serves, so that a Get of it is
	// noSuchInstance rather than noSuchObject (RFC 3416 §4.2.1).
	get(o oid) (val []byte, found, exists bool)
	// next returns the first instance after o.
	next(o oid) (varbind, bool)
}

// sorted is a source held as varbinds in OID order. types lists object
// types it serves even when they have no instance (an empty table).
type sorted struct {
	vbs   []varbind
	types []oid
}

func (s *sorted) get(o oid) ([]byte, bool, bool) {
	i, found := slices.BinarySearchFunc(s.vbs, o, func(v varbind, t oid) int { return v.oid.cmp(t) })
	if found {
		return s.vbs[i].val, true, true
	}
	for _, t := range s.types {
		if o.hasPrefix(t) {
			return nil, false, true
		}
	}
	return nil, false, objectExists(s.vbs, o)
}

func (s *sorted) next(o oid) (varbind, bool) {
	i, _ := slices.BinarySearchFunc(s.vbs, o, func(v varbind, t oid) int { return v.oid.cmp(t) })
	for i < len(s.vbs) && s.vbs[i].oid.cmp(o) <= 0 {
		i++
	}
	if i == len(s.vbs) {
		return varbind{}, false
	}
	return s.vbs[i], true
}

// view is every instance the agent serves, for one request: the TPM's
// (cached for CacheFor, so a walk sees one consistent state), the
// engine's own, which are read live so counters and clocks never stand
// still, the challenges, and the log entries.
type view []source

func (s *Server) view(ctx context.Context) (view, error) {
	tpm, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	static := append(slices.Clone(tpm), s.engineObjects()...)
	slices.SortFunc(static, func(a, b varbind) int { return a.oid.cmp(b.oid) })
	return view{&sorted{vbs: static}, s.chal.view(), s.events(ctx)}, nil
}

func (v view) get(o oid) (val []byte, found, exists bool) {
	for _, src := range v {
		val, f, e := src.get(o)
		if f {
			return val, true, true
		}
		exists = exists || e
	}
	return nil, false, exists
}

// next is the first instance after o of any source.
func (v view) next(o oid) (varbind, bool) {
	var best varbind
	ok := false
	for _, src := range v {
		if vb, f := src.next(o); f && (!ok || vb.oid.cmp(best.oid) < 0) {
			best, ok = vb, true
		}
	}
	return best, ok
}

// events returns the log entries, read at most once per CacheFor.
func (s *Server) events(ctx context.Context) *events {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ev != nil && time.Since(s.evAt) < s.cfg.CacheFor {
		return s.ev
	}
	s.ev, s.evAt = s.logs(ctx), time.Now()
	return s.ev
}

// sysServices: a router serves the internet layer (3) and applications
// (7): 2^(3-1) + 2^(7-1) (RFC 3418).
const sysServices = 1<<2 | 1<<6

// engineObjects are the SNMPv2-MIB system and snmp groups (RFC 3418),
// the snmpEngine group (RFC 3411) and the USM statistics (RFC 3414).
func (s *Server) engineObjects() []varbind {
	var out []varbind
	add := func(o mibdef.OID, v []byte) { out = append(out, varbind{oid(o), v}) }
	str := func(o mibdef.OID, v string) { add(o, appendTLV(nil, tagOctets, []byte(v))) }
	integer := func(o mibdef.OID, v int64) { add(o, appendInt(nil, tagInteger, v)) }
	counter := func(o mibdef.OID, v *atomic.Uint32) { add(o, appendUint(nil, tagCounter32, uint64(v.Load()))) }

	// sysUpTime counts hundredths of a second since this engine started;
	// the sysORTable is fixed at start, so its entry and sysORLastChange
	// are 0.
	str(mibdef.SysDescr, s.cfg.SysDescr)
	add(mibdef.SysObjectID, appendTLV(nil, tagOID, oid(mibdef.RIVAgent).bytes()))
	add(mibdef.SysUpTime, appendUint(nil, tagTimeTicks, uint64(time.Since(s.start)/(10*time.Millisecond))&(1<<32-1)))
	str(mibdef.SysContact, s.cfg.SysContact)
	str(mibdef.SysName, s.cfg.SysName)
	str(mibdef.SysLocation, s.cfg.SysLocation)
	integer(mibdef.SysServices, sysServices)
	add(mibdef.SysORLastChange, appendUint(nil, tagTimeTicks, 0))
	add(mibdef.SysORID.Child(1), appendTLV(nil, tagOID, oid(mibdef.RIVCompliance).bytes()))
	str(mibdef.SysORDescr.Child(1), "RIV-ATTESTATION-MIB: TPM 2.0 attestation state (rivCompliance)")
	add(mibdef.SysORUpTime.Child(1), appendUint(nil, tagTimeTicks, 0))

	// Communities are never accepted (SNMPv1 and v2c are dropped as bad
	// versions), so their counters stay 0; authentication failure traps
	// are not sent: disabled(2).
	counter(mibdef.SnmpInPkts, &s.inPkts)
	counter(mibdef.SnmpInBadVersions, &s.badVersions)
	counter(mibdef.SnmpInBadCommunityNames, &s.zero)
	counter(mibdef.SnmpInBadCommunityUses, &s.zero)
	counter(mibdef.SnmpInASNParseErrs, &s.asnParseErrs)
	integer(mibdef.SnmpEnableAuthenTraps, 2)
	counter(mibdef.SnmpSilentDrops, &s.zero) // a tooBig reply always fits
	counter(mibdef.SnmpProxyDrops, &s.zero)

	str(mibdef.SnmpEngineID, string(s.engineID))
	integer(mibdef.SnmpEngineBoots, int64(s.cfg.EngineBoots))
	integer(mibdef.SnmpEngineTime, int64(s.engineTime()))
	integer(mibdef.SnmpEngineMaxMessageSize, maxMsg)
	for _, c := range []struct {
		o mibdef.OID
		v *atomic.Uint32
	}{
		{mibdef.UsmStatsUnsupportedSecLevels, &s.unsupportedSecLevels}, {mibdef.UsmStatsNotInTimeWindows, &s.notInTimeWindows},
		{mibdef.UsmStatsUnknownUserNames, &s.unknownUserNames}, {mibdef.UsmStatsUnknownEngineIDs, &s.unknownEngineIDs},
		{mibdef.UsmStatsWrongDigests, &s.wrongDigests}, {mibdef.UsmStatsDecryptionErrors, &s.decryptionErrors},
		{mibdef.SnmpUnknownContexts, &s.unknownContexts},
	} {
		counter(c.o, c.v)
	}
	return out
}

// snapshot returns the TPM's instances, reading the TPM at most once per
// CacheFor.
func (s *Server) snapshot(ctx context.Context) ([]varbind, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && time.Since(s.snapAt) < s.cfg.CacheFor {
		return s.snap, nil
	}
	st, err := s.status(ctx)
	if err != nil {
		return nil, err
	}
	var out []varbind
	str := func(o mibdef.OID, v []byte) { out = append(out, varbind{oid(o), appendTLV(nil, tagOctets, v)}) }
	u32 := func(o mibdef.OID, tag byte, v uint32) {
		out = append(out, varbind{oid(o), appendUint(nil, tag, uint64(v))})
	}
	cfg := s.cfg.Attester.Config()
	str(mibdef.TpmName.Child(0), []byte(cfg.TPMName))
	str(mibdef.TpmManufacturer.Child(0), []byte(cfg.Manufacturer))
	u32(mibdef.TpmResetCount.Child(0), tagGauge32, st.Clock.ResetCount)
	u32(mibdef.TpmRestartCount.Child(0), tagGauge32, st.Clock.RestartCount)
	u32(mibdef.UpTime.Child(0), tagGauge32, st.UpTime)
	for _, b := range st.PCRs.Banks() {
		for _, i := range st.PCRs.Indexes(b) {
			str(mibdef.PcrValue.Child(uint32(b), uint32(i)), st.PCRs.Get(b, i))
		}
	}
	u32(mibdef.FragmentSize.Child(0), tagGauge32, fragmentSize)
	u32(mibdef.ChallengeLifetime.Child(0), tagGauge32, uint32(s.chal.lifetime/time.Second))
	u32(mibdef.ChallengeMaxRows.Child(0), tagGauge32, uint32(s.chal.maxRows))
	for i, c := range cfg.Certificates {
		n := uint32(i + 1)
		str(mibdef.CertName.Child(n), []byte(c.Name))
		str(mibdef.CertType.Child(n), []byte(c.Type))
		var der []byte
		if c.Cert != nil {
			der = c.Cert.Raw
			str(mibdef.CertData.Child(n), der)
		}
		u32(mibdef.CertLength.Child(n), tagGauge32, uint32(len(der)))
		for f := uint32(1); f <= fragments(len(der)); f++ {
			str(mibdef.CertFragmentData.Child(n, f), fragment(der, f))
		}
	}
	for _, l := range st.Logs {
		t := logCodes[l.Type]
		u32(mibdef.LogEntries.Child(t), tagGauge32, uint32(min(l.Entries, 1<<32-1)))
		str(mibdef.LogLastDigest.Child(t), l.LastDigest)
	}
	s.snap, s.snapAt = out, time.Now()
	return out, nil
}

const (
	maxVarbinds    = 128
	maxRepetitions = 64
	errTooBig      = 1
	errGen         = 5
	errNotWritable = 17
)

// respond answers a decrypted PDU with a Response PDU (nil: drop).
func (s *Server) respond(ctx context.Context, in *inbound, tag byte, pdu []byte) ([]byte, error) {
	switch tag {
	case pduGet, pduGetNext, pduGetBulk, pduSet:
	default:
		return nil, errors.New("not a request PDU")
	}
	d := decoder{pdu}
	reqID, err := d.integer("request-id")
	if err != nil {
		return nil, err
	}
	a, err := d.integer("error-status/non-repeaters")
	if err != nil {
		return nil, err
	}
	b, err := d.integer("error-index/max-repetitions")
	if err != nil {
		return nil, err
	}
	list, err := d.expect(tagSequence, "variable-bindings")
	if err != nil {
		return nil, err
	}
	var oids []oid
	var raws [][]byte
	var sets []setVarbind
	l := decoder{list}
	for !l.empty() {
		before := l.b
		vb, err := l.expect(tagSequence, "VarBind")
		if err != nil {
			return nil, err
		}
		v := decoder{vb}
		ob, err := v.expect(tagOID, "name")
		if err != nil {
			return nil, err
		}
		o, err := parseOID(ob)
		if err != nil {
			return nil, err
		}
		vt, vv, err := v.tlv()
		if err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
		if !v.empty() {
			return nil, fmt.Errorf("%w: bytes after a VarBind's value", errBER)
		}
		if len(oids) == maxVarbinds {
			return s.errorPDU(reqID, errTooBig, 0, nil), nil
		}
		oids = append(oids, o)
		raws = append(raws, before[:len(before)-len(l.b)])
		sets = append(sets, setVarbind{o, vt, vv})
	}
	in.reqID = reqID
	if tag == pduSet {
		// The request's varbinds echoed: with error-status 0 when all
		// were set (RFC 3416 §4.2.5).
		st, at := s.set(ctx, string(in.user), sets)
		return s.errorPDU(reqID, st, at, raws), nil
	}
	snap, err := s.view(ctx)
	if err != nil {
		s.cfg.Logger.Warn("snmp: reading the TPM failed", "err", err)
		return s.errorPDU(reqID, errGen, 1, raws), nil
	}
	next := func(o oid) []byte {
		vb, ok := snap.next(o)
		if !ok {
			return seq(tagSequence, appendTLV(nil, tagOID, o.bytes()), []byte{tagEndOfMibView, 0})
		}
		return seq(tagSequence, appendTLV(nil, tagOID, vb.oid.bytes()), vb.val)
	}
	var vbs [][]byte
	switch tag {
	case pduGet:
		for _, o := range oids {
			val, found, exists := snap.get(o)
			switch {
			case found:
			case exists:
				val = []byte{tagNoSuchInstance, 0}
			default:
				val = []byte{tagNoSuchObject, 0}
			}
			vbs = append(vbs, seq(tagSequence, appendTLV(nil, tagOID, o.bytes()), val))
		}
	case pduGetNext:
		for _, o := range oids {
			vbs = append(vbs, next(o))
		}
	case pduGetBulk:
		nonRep := int(min(max(a, 0), int64(len(oids))))
		reps := int(min(max(b, 0), maxRepetitions))
		for _, o := range oids[:nonRep] {
			vbs = append(vbs, next(o))
		}
		cur := slices.Clone(oids[nonRep:])
		size := 0
		for r := 0; r < reps && len(cur) > 0; r++ {
			for k, o := range cur {
				vb := next(o)
				// Stop before the reply outgrows what the manager takes.
				if size += len(vb); int64(size) > min(in.maxSize, maxMsg)-200 {
					r = reps
					break
				}
				vbs = append(vbs, vb)
				vd := decoder{vb}
				inner, _ := vd.expect(tagSequence, "")
				id := decoder{inner}
				ob, _ := id.expect(tagOID, "")
				cur[k], _ = parseOID(ob)
			}
		}
	}
	resp := seq(pduResponse, appendInt(nil, tagInteger, reqID), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence, vbs...))
	if int64(len(resp))+200 > min(in.maxSize, maxMsg) {
		return s.errorPDU(reqID, errTooBig, 0, nil), nil
	}
	return resp, nil
}

// objectExists says whether o names an instance of an object type with
// an instance in snap. An object type is an instance less its index: .0
// for scalars, the row index for columns.
func objectExists(snap []varbind, o oid) bool {
	for _, v := range snap {
		if o.hasPrefix(v.oid[:len(v.oid)-indexLen(v.oid)]) {
			return true
		}
	}
	return false
}

// indexLen is how many sub-identifiers of an instance are its index.
func indexLen(o oid) int {
	for _, t := range []struct {
		o mibdef.OID
		n int
	}{{mibdef.PcrValue, 2}, {mibdef.CertFragmentData, 2}, {mibdef.QuoteData, 3}} {
		if o.hasPrefix(oid(t.o)) {
			return t.n
		}
	}
	return 1
}

// errorPDU is a Response with error-status (and the request's varbinds
// echoed, as RFC 3416 asks).
func (s *Server) errorPDU(reqID, status, index int64, raws [][]byte) []byte {
	return seq(pduResponse, appendInt(nil, tagInteger, reqID), appendInt(nil, tagInteger, status), appendInt(nil, tagInteger, index), seq(tagSequence, raws...))
}
