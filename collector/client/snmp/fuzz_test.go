package snmp

import (
	"testing"

	"github.com/gosnmp/gosnmp"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/mibdef"
)

// FuzzDecode feeds gosnmp's decoder, which reads every reply the client
// gets, whatever an agent (or anyone on its path) sends: SNMPv3 messages
// with USM parameters the session does not hold, truncated BER, hostile
// lengths. It must return an error, never panic or hang. The MIB's own
// encodings read from the values (rivEventDigests) are fuzzed with it.
func FuzzDecode(f *testing.F) {
	usm := &gosnmp.UsmSecurityParameters{UserName: "riv", AuthenticationProtocol: gosnmp.SHA256, AuthenticationPassphrase: "authpass123",
		PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: "privpass123", AuthoritativeEngineID: "\x80\x00\x7e\xd9\x04riv"}
	pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: gosnmp.NoAuthNoPriv | gosnmp.Reportable, SecurityModel: gosnmp.UserSecurityModel,
		SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: "riv", AuthoritativeEngineID: "\x80\x00\x7e\xd9\x04riv"}, PDUType: gosnmp.GetResponse, MsgMaxSize: 65507,
		Variables: []gosnmp.SnmpPDU{{Name: oid(mibdef.TpmName.Child(0)), Type: gosnmp.OctetString, Value: []byte("tpm0")},
			{Name: oid(mibdef.EventEntry.Child(mibdef.EventDigests, 1, 0)), Type: gosnmp.OctetString, Value: []byte{0, 0, 0, 1, 0, 4, 1, 2}}}}
	if b, err := pkt.MarshalMsg(); err == nil {
		f.Add(b)
	}
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x03})
	f.Add([]byte{0, 0, 0, 2, 0, 0x0b})
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv, SecurityParameters: usm.Copy(), Logger: gosnmp.NewLogger(nil)}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("gosnmp panicked on %x: %v", b, r)
				}
			}()
			g.SnmpDecodePacket(b)
		}()
		if ds, err := parseDigests(b); err == nil {
			for _, d := range ds {
				if len(d.Value) != d.Alg.Size() {
					t.Fatalf("a %v digest of %d bytes", d.Alg, len(d.Value))
				}
			}
		}
	})
}

func TestParseDigests(t *testing.T) {
	sha256 := make([]byte, 32)
	good := append([]byte{0, 0, 0, 1, 0, byte(alg.SHA256)}, sha256...)
	ds, err := parseDigests(good)
	if err != nil || len(ds) != 1 || ds[0].Alg != alg.SHA256 {
		t.Fatalf("parseDigests = %v, %v", ds, err)
	}
	for _, bad := range [][]byte{nil, {0, 0, 0, 1}, good[:20], append(good, 0), {0, 0, 0, 9}, {0, 0, 0, 1, 0x12, 0x34, 1}} {
		if _, err := parseDigests(bad); err == nil {
			t.Errorf("parseDigests(%x) succeeded", bad)
		}
	}
}
