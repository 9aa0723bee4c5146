package snmp

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
)

// fuzzServer is a Server over a fixed status, without a TPM.
func fuzzServer(t testing.TB) (*Server, *userKeys) {
	engine := []byte("\x80\x00\x7f\x59\x04fuzz")
	k, err := localize(User{Name: "riv", AuthPassword: "authpass123", PrivPassword: "privpass123"}, engine)
	if err != nil {
		t.Fatal(err)
	}
	vals := pcr.Values{}
	for i := range 24 {
		vals.Set(alg.SHA256, i, make([]byte, 32))
	}
	s := &Server{cfg: Config{Attester: &attester.Attester{}, EngineBoots: 1, CacheFor: time.Hour}, engineID: engine,
		start: time.Now(),
		status: func(context.Context) (*attester.Status, error) {
			return &attester.Status{PCRs: vals, Logs: []attester.LogStatus{{Type: attester.LogBIOS, Entries: 3, LastDigest: []byte{1}}}}, nil
		}}
	// Two logs, with entries that span fragments and entries with none.
	ima := eventlog.IMAEntryFor(10, alg.SHA256, make([]byte, 32), "/usr/bin/"+strings.Repeat("x", 300), nil, []alg.ID{alg.SHA256})
	evs := &events{logs: []codedLog{
		{1, []eventlog.Event{{Seq: 0, PCR: 0, Type: 3, Digests: []eventlog.Digest{{Alg: alg.SHA1, Value: make([]byte, 20)}}, Data: make([]byte, 33)},
			{Seq: 1, PCR: 7, Type: 0x80000001, Digests: []eventlog.Digest{{Alg: alg.SHA256, Value: make([]byte, 32)}}}}},
		{2, []eventlog.Event{ima, ima}},
	}}
	evs.logs[1].ev[1].Seq = 5
	s.logs = func(context.Context) *events { return evs }
	s.chal = &challenges{lifetime: time.Minute, maxRows: 4, rows: map[uint32]*challenge{
		7: {index: 7, nonce: make([]byte, 32), bank: alg.SHA256, sel: [3]byte{0xff, 0xff, 0xff}, created: time.Now().Add(time.Hour), state: mibdef.StateReady,
			attest: make([]byte, 300), sig: make([]byte, 72)},
	}}
	s.cfg.Logger = slog.New(slog.DiscardHandler)
	s.users.Store(&map[string]userKeys{"riv": k})
	return s, &k
}

func request(s *Server, k *userKeys, tag byte, a, b int64, oids ...mibdef.OID) []byte {
	var vbs [][]byte
	for _, o := range oids {
		vbs = append(vbs, seq(tagSequence, appendTLV(nil, tagOID, oid(o).bytes()), []byte{tagNull, 0}))
	}
	pdu := seq(tag, appendInt(nil, tagInteger, 42), appendInt(nil, tagInteger, a), appendInt(nil, tagInteger, b), seq(tagSequence, vbs...))
	in := &inbound{msgID: 7, maxSize: 65507, user: []byte("riv")}
	msg := s.wrap(in, k, true, pdu)
	return msg
}

// FuzzHandle feeds datagrams to the agent: discovery, authenticated and
// encrypted requests of every kind, and whatever the fuzzer makes of
// them. Nothing may panic, and a reply must be a well-formed message.
func FuzzHandle(f *testing.F) {
	s, k := fuzzServer(f)
	f.Add(request(s, k, pduGet, 0, 0, mibdef.TpmName.Child(0), mibdef.PcrValue.Child(11, 0)))
	f.Add(request(s, k, pduGetNext, 0, 0, mibdef.RIVAttestationMIB))
	f.Add(request(s, k, pduGetBulk, 1, 10, mibdef.TpmName, mibdef.PcrValue))
	f.Add(request(s, k, pduSet, 0, 0, mibdef.TpmName.Child(0)))
	// net-snmp's discovery probe: noAuthNoPriv, reportable, no engine ID.
	disc := seq(tagSequence, appendInt(nil, tagInteger, 3),
		seq(tagSequence, appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 65507), appendTLV(nil, tagOctets, []byte{4}), appendInt(nil, tagInteger, 3)),
		appendTLV(nil, tagOctets, seq(tagSequence, appendTLV(nil, tagOctets, nil), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0),
			appendTLV(nil, tagOctets, nil), appendTLV(nil, tagOctets, nil), appendTLV(nil, tagOctets, nil))),
		seq(tagSequence, appendTLV(nil, tagOctets, nil), appendTLV(nil, tagOctets, nil), seq(pduGet, appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence))))
	f.Add(disc)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		reply, err := s.process(context.Background(), pkt)
		if err != nil || reply == nil {
			return
		}
		d := decoder{reply}
		if _, err := d.expect(tagSequence, "reply"); err != nil || !d.empty() {
			t.Fatalf("reply to %x is malformed: %v", pkt, err)
		}
	})
}

// TestRequestsAnswered checks the seeds get the replies they should: the
// agent's own encoder and decoder agree.
func TestRequestsAnswered(t *testing.T) {
	s, k := fuzzServer(t)
	for _, tag := range []byte{pduGet, pduGetNext, pduGetBulk, pduSet} {
		reply, err := s.process(context.Background(), request(s, k, tag, 0, 5, mibdef.TpmName.Child(0)))
		if err != nil || reply == nil {
			t.Fatalf("PDU 0x%x: %v", tag, err)
		}
		// The reply is itself a valid authPriv message to this engine.
		if _, err := s.process(context.Background(), reply); err == nil {
			t.Errorf("PDU 0x%x: a Response was answered", tag)
		}
	}
	// A tampered byte fails authentication (no reply: not reportable).
	req := request(s, k, pduGet, 0, 0, mibdef.TpmName.Child(0))
	req[len(req)-3] ^= 1
	if reply, _ := s.process(context.Background(), req); reply != nil {
		t.Error("a tampered request was answered")
	}
	if s.wrongDigests.Load() != 1 {
		t.Errorf("usmStatsWrongDigests = %d, want 1", s.wrongDigests.Load())
	}
}

// FuzzRespond reaches what FuzzHandle rarely can past the HMAC: the
// decrypted PDU of an authenticated request.
func FuzzRespond(f *testing.F) {
	s, _ := fuzzServer(f)
	for _, tag := range []byte{pduGet, pduGetNext, pduGetBulk, pduSet} {
		pdu := seq(tag, appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 9),
			seq(tagSequence, seq(tagSequence, appendTLV(nil, tagOID, oid(mibdef.TpmName).bytes()), []byte{tagNull, 0})))
		f.Add(tag, pdu[2:], int64(484))
	}
	// A challenge created, destroyed, read; the log tables walked.
	nonce := appendTLV(nil, tagOctets, make([]byte, 32))
	vb := func(o mibdef.OID, v []byte) []byte {
		return seq(tagSequence, appendTLV(nil, tagOID, oid(o).bytes()), v)
	}
	for _, vbs := range [][][]byte{
		{vb(mibdef.ChallengeEntry.Child(mibdef.ChallengeNonce, 9), nonce), vb(mibdef.ChallengeEntry.Child(mibdef.ChallengeRowStatus, 9), appendInt(nil, tagInteger, 4))},
		{vb(mibdef.ChallengeEntry.Child(mibdef.ChallengeRowStatus, 7), appendInt(nil, tagInteger, 6))},
		{vb(mibdef.ChallengeEntry.Child(mibdef.ChallengeBank, 9), appendUint(nil, tagGauge32, 11)), vb(mibdef.ChallengeEntry.Child(mibdef.ChallengePcrSelect, 9), appendTLV(nil, tagOctets, []byte{1, 0, 0}))},
	} {
		pdu := seq(pduSet, appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence, vbs...))
		f.Add(byte(pduSet), pdu[2:], int64(484))
	}
	for _, o := range []mibdef.OID{mibdef.EventEntry.Child(mibdef.EventPcr, 2, 0), mibdef.EventData.Child(1), mibdef.QuoteData.Child(7)} {
		pdu := seq(pduGetBulk, appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 20), seq(tagSequence, vb(o, []byte{tagNull, 0})))
		f.Add(byte(pduGetBulk), pdu[2:], int64(484))
	}
	f.Fuzz(func(t *testing.T, tag byte, pdu []byte, maxSize int64) {
		resp, err := s.respond(context.Background(), &inbound{maxSize: max(maxSize, 484)}, tag, pdu)
		if err != nil || resp == nil {
			return
		}
		d := decoder{resp}
		if tg, _, err := d.tlv(); err != nil || tg != pduResponse || !d.empty() {
			t.Fatalf("response to %x: tag 0x%x %v", pdu, tg, err)
		}
	})
}

// TestUnknownEngineIDReport: a request to another engine ID gets the
// usmStatsUnknownEngineIDs Report, unauthenticated and carrying this
// engine's ID, boots and time, so the manager can discover it (RFC 3414
// §3.2 step 3, §4).
func TestUnknownEngineIDReport(t *testing.T) {
	s, _ := fuzzServer(t)
	other := []byte("\x80\x00\x7f\x59\x04other")
	msg := seq(tagSequence, appendInt(nil, tagInteger, 3),
		seq(tagSequence, appendInt(nil, tagInteger, 99), appendInt(nil, tagInteger, 65507), appendTLV(nil, tagOctets, []byte{7}), appendInt(nil, tagInteger, 3)),
		appendTLV(nil, tagOctets, seq(tagSequence, appendTLV(nil, tagOctets, other), appendInt(nil, tagInteger, 1), appendInt(nil, tagInteger, 5),
			appendTLV(nil, tagOctets, []byte("riv")), appendTLV(nil, tagOctets, make([]byte, authParamLen)), appendTLV(nil, tagOctets, make([]byte, privParamLen)))),
		appendTLV(nil, tagOctets, []byte("ciphertext")))
	reply, err := s.process(context.Background(), msg)
	if err != nil || reply == nil {
		t.Fatalf("no report: %v", err)
	}
	d := decoder{reply}
	body, _ := d.expect(tagSequence, "")
	m := decoder{body}
	m.integer("")
	hdr, _ := m.expect(tagSequence, "")
	h := decoder{hdr}
	if id, _ := h.integer(""); id != 99 {
		t.Errorf("msgID %d, want the request's 99", id)
	}
	h.integer("")
	if flags, _ := h.expect(tagOctets, ""); len(flags) != 1 || flags[0]&3 != 0 {
		t.Errorf("report flags %x, want noAuthNoPriv", flags)
	}
	sp, _ := m.expect(tagOctets, "")
	spd := decoder{sp}
	sps, _ := spd.expect(tagSequence, "")
	p := decoder{sps}
	if eng, _ := p.expect(tagOctets, ""); string(eng) != string(s.engineID) {
		t.Errorf("report engine ID %x, want %x", eng, s.engineID)
	}
	scoped, err := m.expect(tagSequence, "")
	if err != nil {
		t.Fatal(err)
	}
	sc := decoder{scoped}
	sc.expect(tagOctets, "")
	sc.expect(tagOctets, "")
	pdu, err := sc.expect(pduReport, "")
	if err != nil {
		t.Fatalf("not a Report: %v", err)
	}
	pd := decoder{pdu}
	pd.integer("")
	pd.integer("")
	pd.integer("")
	vbs, _ := pd.expect(tagSequence, "")
	vl := decoder{vbs}
	vb, _ := vl.expect(tagSequence, "")
	v := decoder{vb}
	ob, _ := v.expect(tagOID, "")
	o, _ := parseOID(ob)
	val, _ := v.expect(tagCounter32, "")
	if o.cmp(oid(mibdef.UsmStatsUnknownEngineIDs)) != 0 || len(val) != 1 || val[0] != 1 {
		t.Errorf("report varbind %v = %x, want usmStatsUnknownEngineIDs = 1", o, val)
	}
	// Without the reportable flag, nothing is sent back.
	msg[bytes.Index(msg, []byte{4, 1, 7})+2] = 3
	if reply, _ := s.process(context.Background(), msg); reply != nil {
		t.Error("a non-reportable message got a report")
	}
}

// FuzzParseReply feeds the notification sender's reader what a receiver
// (or anyone on its path) may send back: a Response, a Report, garbage.
// It must not panic, and it accepts an authenticated reply only with the
// right key.
func FuzzParseReply(f *testing.F) {
	s, k := fuzzServer(f)
	resp := seq(pduResponse, appendInt(nil, tagInteger, 5), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0), seq(tagSequence))
	f.Add(s.message(header{msgID: 9, flags: 3, engineID: s.engineID, boots: 1, etime: 5, user: []byte("riv"), ctxEngine: s.engineID}, k, resp))
	report := seq(pduReport, appendInt(nil, tagInteger, 5), appendInt(nil, tagInteger, 0), appendInt(nil, tagInteger, 0),
		seq(tagSequence, seq(tagSequence, appendTLV(nil, tagOID, oid(mibdef.UsmStatsUnknownEngineIDs).bytes()), appendUint(nil, tagCounter32, 1))))
	f.Add(s.message(header{msgID: 9, engineID: s.engineID, boots: 1, etime: 5}, nil, report))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := parseReply(pkt, 9, k, s.engineID)
		if err != nil {
			return
		}
		if r.authentic {
			other := userKeys{auth: make([]byte, 32), priv: make([]byte, 16)}
			if r2, err := parseReply(pkt, 9, &other, s.engineID); err == nil && r2.authentic {
				t.Fatalf("a reply authenticated under two keys: %x", pkt)
			}
		}
	})
}

// FuzzAgentX feeds the subagent what a master (or anything on its
// socket) may send: PDUs of every type in either byte order, truncated,
// with hostile lengths. Nothing may panic; a response encodes.
func FuzzAgentX(f *testing.F) {
	s, _ := fuzzServer(f)
	rng := func(start, end mibdef.OID) []byte {
		return axOIDBytes(axOIDBytes(nil, oid(start), false), oid(end), false)
	}
	f.Add(axPDU(axGet, 0, 1, 2, 3, rng(mibdef.TpmName.Child(0), nil)))
	f.Add(axPDU(axGetNext, 0, 1, 2, 3, append(rng(mibdef.RIVAttestationMIB, nil), rng(mibdef.EventEntry.Child(mibdef.EventPcr, 2, 0), nil)...)))
	f.Add(axPDU(axGetBulk, 0, 1, 2, 3, append([]byte{0, 0, 0, 20}, rng(mibdef.EventData.Child(1), nil)...)))
	set := axVarbind(nil, oid(mibdef.ChallengeEntry.Child(mibdef.ChallengeNonce, 3)), appendTLV(nil, tagOctets, make([]byte, 32)))
	set = axVarbind(set, oid(mibdef.ChallengeEntry.Child(mibdef.ChallengeRowStatus, 3)), appendInt(nil, tagInteger, 4))
	f.Add(axPDU(axTestSet, 0, 1, 2, 3, set))
	f.Add(axPDU(axCommitSet, 0, 1, 2, 3, nil))
	f.Add(axPDU(axGet, axNonDefaultContext, 1, 2, 3, axOctets(nil, []byte("ctx"))))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, p, err := axRead(bufio.NewReader(bytes.NewReader(pkt)))
		if err != nil {
			return
		}
		var pending []setVarbind
		st, _, vbs, answer, _ := s.axHandle(context.Background(), h, p, &pending)
		if answer && st == 0 && len(vbs)%4 != 0 {
			t.Fatalf("a response of %d octets, not a multiple of 4", len(vbs))
		}
	})
}
