package netconf

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// challengeBody is a reply as the RIV agent renders it (prefixes and
// namespaces included).
func challengeBody(attest, sig []byte, extra string) string {
	b64 := base64.StdEncoding.EncodeToString
	return `<tpm20-attestation-response xmlns="` + nsTPM + `"><certificate-name>iak</certificate-name>` +
		`<quote-data>` + b64(attest) + `</quote-data><quote-signature>` + b64(sig) + `</quote-signature><up-time>4711</up-time>` +
		`<unsigned-pcr-values><tpm20-hash-algo xmlns:taa="` + nsTAA + `">taa:TPM_ALG_SHA256</tpm20-hash-algo>` +
		`<pcr-values><pcr-index>0</pcr-index><pcr-value>` + b64(bytes.Repeat([]byte{1}, 32)) + `</pcr-value></pcr-values>` +
		`<pcr-values><pcr-index>10</pcr-index><pcr-value>` + b64(bytes.Repeat([]byte{2}, 32)) + `</pcr-value></pcr-values>` +
		`</unsigned-pcr-values>` + extra + `</tpm20-attestation-response>`
}

func TestDecodeChallenge(t *testing.T) {
	attest, sig := []byte("\xffTCG\x80\x18attest"), []byte("\x00\x18sig")
	unsigned := pcr.Values{}
	unsigned.Set(alg.SHA256, 0, bytes.Repeat([]byte{1}, 32))
	unsigned.Set(alg.SHA256, 10, bytes.Repeat([]byte{2}, 32))
	want := Quote{CertificateName: "iak", Attest: attest, Sig: sig, UpTime: 4711, Unsigned: unsigned}
	for _, tc := range []struct {
		name, body string
		want       []Quote
		err        string
	}{
		{name: "agent", body: challengeBody(attest, sig, ""), want: []Quote{want}},
		{name: "two TPMs", body: challengeBody(attest, sig, "") + challengeBody(attest, sig, ""), want: []Quote{want, want}},
		{name: "unknown elements skipped", body: challengeBody(attest, sig, `<vendor-extra><up-time>1</up-time></vendor-extra><x/>`), want: []Quote{want}},
		{name: "unknown bank left out", body: strings.Replace(challengeBody(attest, sig, ""), "TPM_ALG_SHA256", "TPM_ALG_FOO", 1),
			want: []Quote{{CertificateName: "iak", Attest: attest, Sig: sig, UpTime: 4711, Unsigned: pcr.Values{}}}},
		{name: "empty", body: ``, err: "no tpm20-attestation-response"},
		{name: "other data", body: `<ok/>`, err: "no tpm20-attestation-response"},
		{name: "quote not base64", body: strings.Replace(challengeBody(attest, sig, ""), "<quote-data>", "<quote-data>!", 1), err: "quote-data is not base64"},
		{name: "pcr-index 99", body: strings.Replace(challengeBody(attest, sig, ""), "<pcr-index>10<", "<pcr-index>99<", 1), err: `pcr-index "99"`},
		{name: "up-time", body: strings.Replace(challengeBody(attest, sig, ""), "4711", "-1", 1), err: "up-time"},
		{name: "truncated", body: challengeBody(attest, sig, "")[:200], err: "malformed XML"},
		{name: "mismatched tags", body: `<tpm20-attestation-response><quote-data></up-time>`, err: "malformed XML"},
		{name: "deep self-closing", body: strings.Repeat("<a>", maxDepth) + "<b/>" + strings.Repeat("</a>", maxDepth), err: "no tpm20-attestation-response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeChallenge([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DecodeChallenge = %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeChallenge (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzDecodeChallenge(f *testing.F) {
	f.Add([]byte(challengeBody([]byte("attest"), []byte("sig"), "")))
	f.Add([]byte(`<tpm20-attestation-response><unsigned-pcr-values><pcr-values><pcr-index>1</pcr-index></pcr-values></unsigned-pcr-values></tpm20-attestation-response>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		qs, err := DecodeChallenge(b)
		if err == nil && len(qs) == 0 {
			t.Fatal("no error and no quote")
		}
	})
}
