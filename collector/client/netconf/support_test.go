package netconf

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	nc "github.com/nemith/netconf"

	"github.com/openriv/riv/collector/evidence"
)

// supportBody is a <get> reply of a 2-TPM device with an inventory, as
// the agent writes it (certificate data left out: it is checked by the
// end-to-end tests with real certificates).
const supportBody = `<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">` +
	`<rats-support-structures xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation">` +
	`<compute-nodes><compute-node><node-id>control</node-id></compute-node><compute-node><node-id>lc1</node-id></compute-node></compute-nodes>` +
	`<tpms><tpm><name>tpm0</name><compute-node>control</compute-node></tpm><tpm><name>lc1</name><compute-node>lc1</compute-node></tpm></tpms>` +
	`<attester-supported-algos><tpm20-hash xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs">taa:TPM_ALG_SHA256</tpm20-hash></attester-supported-algos>` +
	`</rats-support-structures>` +
	`<yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"><module-set><module><name>ietf-tpm-remote-attestation</name><feature>bios</feature><feature>ima</feature><feature>mtpm</feature></module></module-set></yang-library>` +
	`<software-inventory xmlns="urn:openriv:params:xml:ns:yang:riv-software-inventory"><component><tag-id>t1</tag-id>` +
	`<rim><digest>` + "0000000000000000000000000000000000000000000000000000000000000001" + `</digest><media-type>application/swid+cose</media-type><file-name>a.cose</file-name><size>417</size></rim>` +
	`</component></software-inventory></data>`

func TestDecodeSupport(t *testing.T) {
	got, err := DecodeSupport([]byte(supportBody))
	if err != nil {
		t.Fatal(err)
	}
	want := &Support{
		TPMs:     []TPM{{Name: "tpm0", ComputeNode: "control"}, {Name: "lc1", ComputeNode: "lc1"}},
		LogTypes: []string{"bios", "ima"},
	}
	got.Banks = nil
	if d := cmp.Diff(want, got, cmp.AllowUnexported(Support{})); d != "" {
		t.Errorf("DecodeSupport (-want +got):\n%s", d)
	}
	inv, err := DecodeInventory([]byte(supportBody))
	if err != nil {
		t.Fatal(err)
	}
	wantInv := []Component{{TagID: "t1", RIMs: []RIMRef{{Digest: strings.Repeat("0", 63) + "1", MediaType: "application/swid+cose", FileName: "a.cose", Size: 417}}}}
	if d := cmp.Diff(wantInv, inv); d != "" {
		t.Errorf("DecodeInventory (-want +got):\n%s", d)
	}
}

func TestDecodeRIMs(t *testing.T) {
	content := []byte("a COSE_Sign1, as far as the decoder cares")
	body := `<data><software-inventory xmlns="urn:openriv:params:xml:ns:yang:riv-software-inventory"><component><tag-id>t1</tag-id>` +
		`<rim><digest>d1</digest><media-type>application/swid+cose</media-type><file-name>a.cose</file-name><content>` + base64.StdEncoding.EncodeToString(content) + `</content></rim>` +
		`</component></software-inventory></data>`
	got, err := DecodeRIMs([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []RIMFile{{TagID: "t1", RIMRef: RIMRef{Digest: "d1", MediaType: "application/swid+cose", FileName: "a.cose"}, Content: content}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("DecodeRIMs (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		`<data><software-inventory><component><tag-id>t</tag-id><rim><content>not base64!</content></rim></component></software-inventory></data>`,
		`<data><software-inventory><component>`,
	} {
		if _, err := DecodeRIMs([]byte(bad)); err == nil {
			t.Errorf("DecodeRIMs(%q) accepted", bad)
		}
	}
}

// The inventory and RIM replies come from the device: untrusted.
func FuzzDecodeSupport(f *testing.F) {
	f.Add([]byte(supportBody))
	f.Add([]byte(`<data><rats-support-structures><tpms><tpm><certificates><certificate><name>x</name><keystore-ref>k</keystore-ref></certificate></certificates></tpm></tpms></rats-support-structures><keystore><asymmetric-keys><asymmetric-key><name>k</name><certificates><certificate><name>x</name><cert-data>AAAA</cert-data></certificate></certificates></asymmetric-key></asymmetric-keys></keystore></data>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := DecodeSupport(b); err == nil {
			for _, c := range s.Certificates {
				if c.Cert == nil {
					t.Fatal("a certificate entry without its certificate")
				}
			}
		}
	})
}

func FuzzDecodeInventory(f *testing.F) {
	f.Add([]byte(supportBody))
	f.Fuzz(func(t *testing.T, b []byte) {
		if inv, err := DecodeInventory(b); err == nil && len(inv) > maxComponents {
			t.Fatalf("%d components", len(inv))
		}
	})
}

func FuzzDecodeRIMs(f *testing.F) {
	f.Add([]byte(`<data><software-inventory><component><tag-id>t1</tag-id><rim><digest>d</digest><content>AAEC</content></rim></component></software-inventory></data>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := DecodeRIMs(b)
		if err != nil {
			return
		}
		total := 0
		for _, f := range files {
			total += len(f.Content)
		}
		if total > maxRIMBytes {
			t.Fatalf("%d bytes of RIMs decoded, limit %d", total, maxRIMBytes)
		}
	})
}

// TestRPCErrorIs: the client's rpc-errors are the transport-neutral
// errors the verifier reacts to.
func TestRPCErrorIs(t *testing.T) {
	busy := &RPCError{Errors: nc.RPCErrors{{Tag: "resource-denied", Message: "quote queue full"}}}
	denied := &RPCError{Errors: nc.RPCErrors{{Tag: "access-denied"}}}
	for _, tc := range []struct {
		err           error
		refused, isBz bool
	}{
		{fmt.Errorf("challenge: %w", busy), true, true},
		{denied, true, false},
		{errors.New("connection reset"), false, false},
	} {
		if got := errors.Is(tc.err, evidence.ErrRefused); got != tc.refused {
			t.Errorf("%v is ErrRefused: %v", tc.err, got)
		}
		if got := errors.Is(tc.err, evidence.ErrBusy); got != tc.isBz {
			t.Errorf("%v is ErrBusy: %v", tc.err, got)
		}
	}
}
