package restconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/evidence"
)

func TestToXML(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		output   bool
		want     string
	}{
		{"data", `{"m:a":{"b":"x<y&z","c":[1,2],"d":[{"e":true},{"e":false}],"f":[null],"g":"9007199254740993"}}`, false,
			`<a><b>x&lt;y&amp;z</b><c>1</c><c>2</c><d><e>true</e></d><d><e>false</e></d><f/><g>9007199254740993</g></a>`},
		{"output unwrapped", `{"ietf-tpm-remote-attestation:output":{"r":[{"n":"a"},{"n":"b"}]}}`, true, `<r><n>a</n></r><r><n>b</n></r>`},
		{"no content", ``, true, ``},
		{"prefixed member", `{"m:a":{"other-module:b":1}}`, false, `<a><b>1</b></a>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ToXML([]byte(tc.in), tc.output)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("ToXML (-want +got):\n%s", d)
			}
		})
	}
}

func TestToXMLRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		output   bool
		want     string
	}{
		{"not an object", `[1]`, false, "where"},
		{"array in array", `{"a":[[1]]}`, false, "unexpected"},
		{"name that breaks XML", `{"a><b":1}`, false, "member name"},
		{"empty name", `{"":1}`, false, "member name"},
		{"truncated", `{"a":{"b":`, false, "restconf reply"},
		{"trailing data", `{"a":1}{"b":2}`, false, "after the JSON value"},
		{"too deep", `{"a":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat("}", 71), false, "deeper"},
		{"not the output", `{"m:input":{}}`, true, "output belongs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ToXML([]byte(tc.in), tc.output)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ToXML(%.40q) = %v, want %q", tc.in, err, tc.want)
			}
		})
	}
}

// The agent's JSON replies, decoded through ToXML by the NETCONF
// decoders, give the evidence NETCONF gives.
func TestDecodesJSONReplies(t *testing.T) {
	challenge := `{"ietf-tpm-remote-attestation:output":{"tpm20-attestation-response":[{"certificate-name":"iak","quote-data":"AAEC","quote-signature":"AwQ=","up-time":16,` +
		`"unsigned-pcr-values":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-values":[{"pcr-index":10,"pcr-value":"fSsIcWX/hiBSrXWdybBk0+ygmA72K9SQlVs+nCTDh44="}]}]}]}}`
	x, err := ToXML([]byte(challenge), true)
	if err != nil {
		t.Fatal(err)
	}
	q, err := netconf.DecodeChallenge(x)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || q[0].CertificateName != "iak" || string(q[0].Attest) != "\x00\x01\x02" || string(q[0].Sig) != "\x03\x04" || q[0].UpTime != 16 || len(q[0].Unsigned) != 1 {
		t.Errorf("DecodeChallenge: %+v", q)
	}
	logs := `{"ietf-tpm-remote-attestation:output":{"system-event-logs":{"node-data":[{"name":"tpm0","up-time":26,"log-result":{"bios-event-logs":{"bios-event-entry":[` +
		`{"event-number":22,"event-type":13,"pcr-index":9,"digest-list":[{"hash-algo":"ietf-tcg-algs:TPM_ALG_SHA1","digest":["EEKa0plQKbpeEXed/LAe5E3WTBA="]}],"event-size":15,"event-data":["L2luaXRyZC5pbWctMi4w"]}]}}}]}}}`
	if x, err = ToXML([]byte(logs), true); err != nil {
		t.Fatal(err)
	}
	l, up, err := netconf.DecodeLogs(x, "bios")
	if err != nil {
		t.Fatal(err)
	}
	if up != 26 || len(l.Events) != 1 || l.Events[0].Seq != 22 || l.Events[0].PCR != 9 || string(l.Events[0].Data) != "/initrd.img-2.0" || len(l.Events[0].Digests) != 1 {
		t.Errorf("DecodeLogs: up-time %d, %+v", up, l.Events)
	}
	// A digest of the wrong size is refused as over NETCONF.
	bad := strings.Replace(logs, "EEKa0plQKbpeEXed/LAe5E3WTBA=", "AAAA", 1)
	if x, err = ToXML([]byte(bad), true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := netconf.DecodeLogs(x, "bios"); err == nil {
		t.Error("a 3-byte SHA-1 digest was accepted")
	}
}

func TestErrorOf(t *testing.T) {
	busy := errorOf(503, []byte(`{"ietf-restconf:errors":{"error":[{"error-type":"application","error-tag":"resource-denied","error-message":"quote queue full"}]}}`))
	if !errors.Is(busy, evidence.ErrBusy) || !errors.Is(busy, evidence.ErrRefused) || !strings.Contains(busy.Error(), "quote queue full") {
		t.Errorf("resource-denied: %v", busy)
	}
	other := errorOf(400, []byte(`{"ietf-restconf:errors":{"error":[{"error-tag":"invalid-value","error-message":"no"}]}}`))
	if errors.Is(other, evidence.ErrBusy) || !errors.Is(other, evidence.ErrRefused) {
		t.Errorf("invalid-value: %v", other)
	}
	if e := errorOf(502, []byte("<html>bad gateway</html>")); !strings.Contains(e.Error(), "502") {
		t.Errorf("a non-RESTCONF error: %v", e)
	}
}

func TestRestconfRoot(t *testing.T) {
	if r, err := restconfRoot([]byte(`<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0"><Link rel="restconf" href="/top/restconf/"/></XRD>`)); err != nil || r != "/top/restconf" {
		t.Errorf("root %q, %v", r, err)
	}
	for _, bad := range []string{`<XRD/>`, `<XRD><Link rel="restconf" href="https://elsewhere.example/restconf"/></XRD>`, `<XRD><Link rel="restconf" href="//elsewhere.example/r"/></XRD>`, `not xml`} {
		if _, err := restconfRoot([]byte(bad)); err == nil {
			t.Errorf("restconfRoot(%q) accepted", bad)
		}
	}
}
