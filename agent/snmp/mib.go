package snmp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/mibdef"
)

// varbind is one object instance with its value, BER-encoded.
type varbind struct {
	oid oid
	val []byte
}

// snapshot returns the MIB's instances in OID order, reading the TPM at
// most once per CacheFor so a walk sees one consistent state.
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
	for i, c := range cfg.Certificates {
		n := uint32(i + 1)
		str(mibdef.CertName.Child(n), []byte(c.Name))
		str(mibdef.CertType.Child(n), []byte(c.Type))
		if c.Cert != nil {
			str(mibdef.CertData.Child(n), c.Cert.Raw)
		}
	}
	for _, l := range st.Logs {
		t := map[attester.LogType]uint32{attester.LogBIOS: 1, attester.LogIMA: 2, attester.LogNetequip: 3}[l.Type]
		u32(mibdef.LogEntries.Child(t), tagGauge32, uint32(min(l.Entries, 1<<32-1)))
		str(mibdef.LogLastDigest.Child(t), l.LastDigest)
	}
	str(mibdef.SnmpEngineID, s.engineID)
	out = append(out, varbind{oid(mibdef.SnmpEngineBoots), appendInt(nil, tagInteger, int64(s.cfg.EngineBoots))})
	out = append(out, varbind{oid(mibdef.SnmpEngineTime), appendInt(nil, tagInteger, int64(s.engineTime()))})
	out = append(out, varbind{oid(mibdef.SnmpEngineMaxMessageSize), appendInt(nil, tagInteger, maxMsg)})
	for _, c := range []struct {
		o mibdef.OID
		v uint32
	}{
		{mibdef.UsmStatsUnsupportedSecLevels, s.unsupportedSecLevels.Load()}, {mibdef.UsmStatsNotInTimeWindows, s.notInTimeWindows.Load()},
		{mibdef.UsmStatsUnknownUserNames, s.unknownUserNames.Load()}, {mibdef.UsmStatsUnknownEngineIDs, s.unknownEngineIDs.Load()},
		{mibdef.UsmStatsWrongDigests, s.wrongDigests.Load()}, {mibdef.UsmStatsDecryptionErrors, s.decryptionErrors.Load()},
	} {
		u32(c.o, tagCounter32, c.v)
	}
	slices.SortFunc(out, func(a, b varbind) int { return a.oid.cmp(b.oid) })
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
		if _, _, err := v.tlv(); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
		if len(oids) == maxVarbinds {
			return s.errorPDU(reqID, errTooBig, 0, nil), nil
		}
		oids = append(oids, o)
		raws = append(raws, before[:len(before)-len(l.b)])
	}
	in.reqID = reqID
	if tag == pduSet {
		// The MIB is read-only.
		return s.errorPDU(reqID, errNotWritable, 1, raws), nil
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		s.cfg.Logger.Warn("snmp: reading the TPM failed", "err", err)
		return s.errorPDU(reqID, errGen, 1, raws), nil
	}
	next := func(o oid) []byte {
		i, _ := slices.BinarySearchFunc(snap, o, func(v varbind, t oid) int { return v.oid.cmp(t) })
		for i < len(snap) && snap[i].oid.cmp(o) <= 0 {
			i++
		}
		if i == len(snap) {
			return seq(tagSequence, appendTLV(nil, tagOID, o.bytes()), []byte{tagEndOfMibView, 0})
		}
		return seq(tagSequence, appendTLV(nil, tagOID, snap[i].oid.bytes()), snap[i].val)
	}
	var vbs [][]byte
	switch tag {
	case pduGet:
		for _, o := range oids {
			i, found := slices.BinarySearchFunc(snap, o, func(v varbind, t oid) int { return v.oid.cmp(t) })
			val := []byte{tagNoSuchObject, 0}
			switch {
			case found:
				val = snap[i].val
			case o.hasPrefix(oid(mibdef.RIVAttestationMIB)) && len(o) > len(mibdef.RIVAttestationMIB)+1:
				val = []byte{tagNoSuchInstance, 0}
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

// errorPDU is a Response with error-status (and the request's varbinds
// echoed, as RFC 3416 asks).
func (s *Server) errorPDU(reqID, status, index int64, raws [][]byte) []byte {
	return seq(pduResponse, appendInt(nil, tagInteger, reqID), appendInt(nil, tagInteger, status), appendInt(nil, tagInteger, index), seq(tagSequence, raws...))
}
