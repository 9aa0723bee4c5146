package snmp

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
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
