package snmp

import (
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
		users: map[string]userKeys{"riv": k}, start: time.Now(),
		status: func(context.Context) (*attester.Status, error) {
			return &attester.Status{PCRs: vals, Logs: []attester.LogStatus{{Type: attester.LogBIOS, Entries: 3, LastDigest: []byte{1}}}}, nil
		}}
	s.cfg.Logger = slog.New(slog.DiscardHandler)
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
