package main

import (
	"crypto/elliptic"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

func TestRIMCommands(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	v, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	other, _ := vendor.New("Other", "https://other.example", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	otherDir := t.TempDir()
	other.WriteFiles(otherDir)
	p := func(n string) string { return filepath.Join(dir, n) }
	os.WriteFile(p("bgpd"), []byte("bgpd binary"), 0o600)
	vals := pcr.Values{}
	vals.Set(alg.SHA256, 0, alg.SHA256.Sum([]byte("x")))
	b, _ := json.Marshal(vals)
	os.WriteFile(p("pcrs.json"), b, 0o600)
	R := testref.Dir(t)

	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"sign coswid", []string{"rim", "sign", "coswid", "--key", p("rim-signer.key"), "--cert", p("rim-signer.pem"), "--tag-id", "3c1a2b3c-4d5e-4f60-8a7b-8c9d0e1f2a3b",
			"--vendor", "RIV Test Networks", "--reg-id", "https://rims.example.net", "--name", "frr", "--version", "9.1",
			"--supersedes", "3c1a2b3c-4d5e-4f60-8a7b-8c9d0e1f2a3a", "-o", p("frr.cose"), "/usr/bin/bgpd=" + p("bgpd")}, 0, "signed coswid", ""},
		{"verify coswid", []string{"rim", "verify", "--anchors", p("vendor-ca.pem"), p("frr.cose")}, 0, "/usr/bin/bgpd sha384:", ""},
		{"verify json", []string{"rim", "verify", "--json", "--anchors", p("vendor-ca.pem"), p("frr.cose")}, 0, `"supersedes": [`, ""},
		{"verify other vendor", []string{"rim", "verify", "--anchors", filepath.Join(otherDir, "vendor-ca.pem"), p("frr.cose")}, 1, "", "not trusted"},
		{"sign corim", []string{"rim", "sign", "corim", "--key", p("rim-signer.key"), "--cert", p("rim-signer.pem"), "--tag-id", "3c1a2b3c-4d5e-4f60-8a7b-8c9d0e1f2a3c",
			"--vendor", "RIV Test Networks", "--model", "rtr-1000", "--pcrs", p("pcrs.json"), "-o", p("pcrs.corim")}, 0, "signed corim", ""},
		{"verify corim", []string{"rim", "verify", "--anchors", p("vendor-ca.pem"), p("pcrs.corim")}, 0, "2d711642", ""},
		{"show", []string{"rim", "show", p("frr.cose")}, 0, "UNVERIFIED", ""},
		{"wrong key for cert", []string{"rim", "sign", "coswid", "--key", filepath.Join(otherDir, "rim-signer.key"), "--cert", p("rim-signer.pem"), "--tag-id", "3c1a2b3c-4d5e-4f60-8a7b-8c9d0e1f2a3b", "--vendor", "x", "-o", p("x")}, 2, "", "not for the key"},
		{"reference corim", []string{"rim", "verify", "--key", filepath.Join(R, "rim/corim/veraison/signed-corim-verification-key.jwk.json"), filepath.Join(R, "rim/corim/veraison/signed-good-corim.cbor")}, 0, "verified corim", ""},
		{"mislabelled HIRS", []string{"rim", "verify", "--key", filepath.Join(R, "rim/cose/hirs/certs/COMP_OEM1_rim_signer_rsa_3k_sha384.pem"), filepath.Join(R, "rim/cose/hirs/sign_pass_rsa_3072_sha384.cose")}, 1, "", "ES256 but the signing key is RSA-3072"},
		{"garbage", []string{"rim", "verify", "--key", p("vendor-ca.pem"), p("bgpd")}, 2, "", "COSE_Sign1"},
		{"no anchors", []string{"rim", "verify", p("frr.cose")}, 2, "", "exactly one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.err) {
				t.Errorf("rivctl %v = %d\nstdout: %s\nstderr: %s\nwant %d, stdout ~ %q, stderr ~ %q", tt.args, code, out, errs, tt.code, tt.out, tt.err)
			}
		})
	}
}
