package restconf_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/testbed/device"
)

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func startDevice(t *testing.T) *device.Device { return device.StartT(t, device.Options{}) }

// client authenticates with the operator certificate and checks the
// server certificate chains to the manufacturer CA (an IDevID names a
// device, not a host name).
func client(d *device.Device, cert tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(d.CA.Cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots})
			if err == nil && !cs.PeerCertificates[0].Equal(d.IDevID) {
				err = errors.New("server certificate is not the IDevID")
			}
			return err
		},
	}}}
}

func do(t *testing.T, c *http.Client, d *device.Device, method, path, accept, ctype, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+d.RESTCONFAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// yanglint validates JSON against the official modules.
func yanglint(t *testing.T, kind, file string, extra ...string) {
	t.Helper()
	bin := testref.NeedTool(t, "yanglint")
	R := testref.YangDir(t)
	args := append([]string{"-t", kind}, extra...)
	args = append(args, "-F", "ietf-tpm-remote-attestation:bios,ima,netequip_boot", "-F", "ietf-tcg-algs:*", "-F", "ietf-keystore:*",
		"-F", "ietf-crypto-types:*", "-F", "ietf-hardware:*", "-p", R,
		filepath.Join(R, "ietf-tpm-remote-attestation@2024-12-05.yang"), filepath.Join(R, "ietf-tcg-algs@2024-12-05.yang"),
		filepath.Join(R, "ietf-keystore@2024-10-10.yang"))
	if kind == "get" {
		// The YANG library only where it is part of the data checked.
		args = append(args, filepath.Join(R, "ietf-yang-library@2019-01-04.yang"), filepath.Join(R, "ietf-datastores@2018-02-14.yang"))
	}
	args = append(args, file)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "rror") {
		t.Errorf("yanglint %v: %v\n%s", args, err, out)
	}
}

const js = "application/yang-data+json"
const xmlType = "application/yang-data+xml"

func TestDataValidatesAgainstTheModules(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	dir := t.TempDir()

	status, h, body := do(t, c, d, "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures", js, "", "")
	if status != 200 || h.Get("Content-Type") != js {
		t.Fatalf("GET rats-support-structures = %d %s %s", status, h.Get("Content-Type"), body)
	}
	var rss map[string]any
	if err := json.Unmarshal(body, &rss); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	if _, ok := rss["ietf-tpm-remote-attestation:rats-support-structures"]; !ok {
		t.Fatalf("top-level member: %s", body)
	}
	os.WriteFile(filepath.Join(dir, "rss.json"), body, 0o600)

	status, _, body = do(t, c, d, "GET", "/restconf/data", js, "", "")
	if status != 200 {
		t.Fatalf("GET data = %d %s", status, body)
	}
	// The datastore content without RESTCONF's "data" wrapper.
	var all map[string]json.RawMessage
	json.Unmarshal(body, &all)
	os.WriteFile(filepath.Join(dir, "all.json"), all["ietf-restconf:data"], 0o600)
	for _, want := range []string{`"ietf-keystore:keystore"`, `"ietf-yang-library:yang-library"`, `"hidden-private-key":[null]`, `"hardware-based":false`, `"pcr-index":[0,1,2`, `"ietf-tcg-algs:TPM_ALG_SHA256"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET /restconf/data lacks %s:\n%.600s", want, body)
		}
	}
	// Complete-datastore validation (mandatory nodes, leafrefs) for the
	// RFC 9684 data and the keystore; the YANG library is checked as
	// <get> data (its deprecated modules-state would be mandatory).
	yanglint(t, "get", filepath.Join(dir, "all.json"))
	var parts map[string]json.RawMessage
	json.Unmarshal(all["ietf-restconf:data"], &parts)
	delete(parts, "ietf-yang-library:yang-library")
	noLib, _ := json.Marshal(parts)
	os.WriteFile(filepath.Join(dir, "nolib.json"), noLib, 0o600)
	yanglint(t, "data", filepath.Join(dir, "nolib.json"))

	// One list entry by key, in both encodings.
	status, _, body = do(t, c, d, "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=tpm0/tpm20-pcr-bank=ietf-tcg-algs%3ATPM_ALG_SHA256", js, "", "")
	if status != 200 || !bytes.HasPrefix(body, []byte(`{"ietf-tpm-remote-attestation:tpm20-pcr-bank":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256"`)) {
		t.Errorf("GET one bank = %d %s", status, body)
	}
	status, h, body = do(t, c, d, "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=tpm0/certificates", xmlType, "", "")
	if status != 200 || h.Get("Content-Type") != xmlType || !bytes.HasPrefix(body, []byte(`<certificates xmlns="`+netconf.NSTPM+`">`)) {
		t.Errorf("GET certificates as XML = %d %s", status, body)
	}
}

// TestChallengeOverRESTCONF runs both RPCs with JSON and XML input and
// verifies the quote with the IAK certificate the agent serves.
func TestChallengeOverRESTCONF(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	dir := t.TempDir()
	nonce := make([]byte, 32)
	rand.Read(nonce)
	in := fmt.Sprintf(`{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"%s","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[0,7,10]}]}}}`, base64.StdEncoding.EncodeToString(nonce))
	status, _, body := do(t, c, d, "POST", "/restconf/operations/ietf-tpm-remote-attestation:tpm20-challenge-response-attestation", js, js, in)
	if status != 200 {
		t.Fatalf("challenge = %d %s", status, body)
	}
	var out struct {
		Out struct {
			R []struct {
				Cert   string `json:"certificate-name"`
				Quote  []byte `json:"quote-data"`
				Sig    []byte `json:"quote-signature"`
				UpTime uint32 `json:"up-time"`
			} `json:"tpm20-attestation-response"`
		} `json:"ietf-tpm-remote-attestation:output"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Out.R) != 1 {
		t.Fatalf("challenge output %v: %s", err, body)
	}
	// yanglint reads a reply inside a container named for the RPC; the
	// operational data resolves certificate-name.
	var wrapped map[string]json.RawMessage
	json.Unmarshal(body, &wrapped)
	os.WriteFile(filepath.Join(dir, "reply.json"), []byte(`{"ietf-tpm-remote-attestation:tpm20-challenge-response-attestation":`+string(wrapped["ietf-tpm-remote-attestation:output"])+`}`), 0o600)
	_, _, all := do(t, c, d, "GET", "/restconf/data", js, "", "")
	var data map[string]json.RawMessage
	json.Unmarshal(all, &data)
	os.WriteFile(filepath.Join(dir, "oper.json"), data["ietf-restconf:data"], 0o600)
	yanglint(t, "reply", filepath.Join(dir, "reply.json"), "-O", filepath.Join(dir, "oper.json"))

	// The IAK certificate from the keystore, as a verifier would get it.
	_, _, ks := do(t, c, d, "GET", "/restconf/data/ietf-keystore:keystore", js, "", "")
	var k struct {
		KS struct {
			Keys struct {
				Key []struct {
					Certs struct {
						Cert []struct {
							Name string `json:"name"`
							Data []byte `json:"cert-data"`
						} `json:"certificate"`
					} `json:"certificates"`
				} `json:"asymmetric-key"`
			} `json:"asymmetric-keys"`
		} `json:"ietf-keystore:keystore"`
	}
	if err := json.Unmarshal(ks, &k); err != nil {
		t.Fatalf("keystore: %v %s", err, ks)
	}
	var iak *x509.Certificate
	for _, key := range k.KS.Keys.Key {
		for _, ce := range key.Certs.Cert {
			if ce.Name == out.Out.R[0].Cert {
				certs, err := identity.ParseCertsOnlyCMS(ce.Data)
				if err != nil {
					t.Fatal(err)
				}
				iak = certs[0]
			}
		}
	}
	if iak == nil {
		t.Fatalf("no keystore certificate named %q", out.Out.R[0].Cert)
	}
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 7, 10}}}
	if _, err := quote.Verify(iak.PublicKey, out.Out.R[0].Quote, out.Out.R[0].Sig, quote.Options{Nonce: nonce, Selection: sel}); err != nil {
		t.Errorf("quote over RESTCONF: %v", err)
	}

	// log-retrieval with XML input and XML output.
	xin := `<input xmlns="` + netconf.NSTPM + `" xmlns:tpm="` + netconf.NSTPM + `"><log-type>tpm:netequip_boot</log-type><log-selector><log-entry-quantity>2</log-entry-quantity></log-selector></input>`
	status, h, body := do(t, c, d, "POST", "/restconf/operations/ietf-tpm-remote-attestation:log-retrieval", xmlType, xmlType, xin)
	if status != 200 || h.Get("Content-Type") != xmlType || bytes.Count(body, []byte("<boot-event-entry>")) != 2 {
		t.Errorf("log-retrieval (XML) = %d %s", status, body)
	}
	// and with JSON: the bios log, as numbers and strings per RFC 7951.
	status, _, body = do(t, c, d, "POST", "/restconf/operations/ietf-tpm-remote-attestation:log-retrieval", js, js,
		`{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"log-entry-quantity":3}]}}`)
	if status != 200 || !bytes.Contains(body, []byte(`"bios-event-entry":[{"event-number":0,`)) {
		t.Errorf("log-retrieval (JSON) = %d %.400s", status, body)
	}
}

func TestErrors(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	const op = "/restconf/operations/ietf-tpm-remote-attestation:tpm20-challenge-response-attestation"
	cases := []struct {
		name, method, path, accept, ctype, body string
		status                                  int
		tag                                     string
	}{
		{"unknown resource", "GET", "/restconf/nothing", js, "", "", 404, "invalid-value"},
		{"unknown data", "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=tpm9", js, "", "", 404, "invalid-value"},
		{"list without key", "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm", js, "", "", 400, "invalid-value"},
		{"unqualified first segment", "GET", "/restconf/data/rats-support-structures", js, "", "", 400, "invalid-value"},
		{"unknown module", "GET", "/restconf/data/foo:bar", js, "", "", 400, "invalid-value"},
		{"write", "PUT", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures", js, js, "{}", 405, "operation-not-supported"},
		{"unknown operation", "POST", "/restconf/operations/ietf-netconf:kill-session", js, js, "", 404, "invalid-value"},
		{"bad JSON", "POST", op, js, js, `{"ietf-tpm-remote-attestation:input":`, 400, "malformed-message"},
		{"wrong input member", "POST", op, js, js, `{"input":{}}`, 400, "malformed-message"},
		{"hostile XML", "POST", op, js, xmlType, `<!DOCTYPE x [<!ENTITY a "aaaa">]><input>&a;</input>`, 400, "malformed-message"},
		{"missing nonce", "POST", op, js, js, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{}}}`, 400, "missing-element"},
		{"unknown bank", "POST", op, js, js, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SM3_256","pcr-index":[0]}]}}}`, 400, "operation-failed"},
		{"oversized body", "POST", op, js, js, `{"x":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "too-big"},
		{"unsupported media type", "POST", op, js, "text/plain", "x", 415, "invalid-value"},
		{"not acceptable", "GET", "/restconf/data", "text/html", "", "", 406, "operation-not-supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := do(t, c, d, tc.method, tc.path, tc.accept, tc.ctype, tc.body)
			var e struct {
				Errors struct {
					Error []struct {
						Type string `json:"error-type"`
						Tag  string `json:"error-tag"`
						Msg  string `json:"error-message"`
					} `json:"error"`
				} `json:"ietf-restconf:errors"`
			}
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors.Error) == 0 {
				t.Fatalf("%s %s = %d, body not an errors document: %v %s", tc.method, tc.path, status, err, body)
			}
			if status != tc.status || e.Errors.Error[0].Tag != tc.tag {
				t.Errorf("%s %s = %d %s (%s), want %d %s", tc.method, tc.path, status, e.Errors.Error[0].Tag, e.Errors.Error[0].Msg, tc.status, tc.tag)
			}
		})
	}
}

// TestAccessControl: NACM denies the attestation RPCs to a user no rule
// permits, and a client without a certificate never gets in.
func TestAccessControl(t *testing.T) {
	d := startDevice(t)
	// A certificate from the operators' CA for a user outside the
	// verifiers group.
	guest, err := d.IssueClientCert("guest")
	if err != nil {
		t.Fatal(err)
	}
	c := client(d, guest)
	status, _, body := do(t, c, d, "POST", "/restconf/operations/ietf-tpm-remote-attestation:log-retrieval", js, js,
		`{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios"}}`)
	if status != 403 || !bytes.Contains(body, []byte(`"error-tag":"access-denied"`)) {
		t.Errorf("guest log-retrieval = %d %s", status, body)
	}
	if status, _, _ := do(t, c, d, "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures", js, "", ""); status != 200 {
		t.Errorf("guest read = %d, want 200 (reads are not default-deny)", status)
	}
	anon := client(d, tls.Certificate{})
	if _, err := anon.Get("https://" + d.RESTCONFAddr + "/restconf/data"); err == nil {
		t.Error("a client without a certificate was served")
	}
}

// TestCurlInterop: curl, a real RESTCONF client's transport, reads data
// and runs the challenge.
func TestCurlInterop(t *testing.T) {
	curl := testref.NeedTool(t, "curl")
	d := startDevice(t)
	dir := t.TempDir()
	key, _ := x509.MarshalPKCS8PrivateKey(d.ClientCert.PrivateKey)
	os.WriteFile(filepath.Join(dir, "c.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.ClientCert.Leaf.Raw}), 0o600)
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	spki, _ := x509.MarshalPKIXPublicKey(d.IDevID.PublicKey)
	pin := "sha256//" + base64.StdEncoding.EncodeToString(sha256Sum(spki))
	base := []string{"-sS", "--fail-with-body", "--tlsv1.3", "-k", "--pinnedpubkey", pin, "--cert", filepath.Join(dir, "c.pem"), "--key", filepath.Join(dir, "k.pem"), "-H", "Accept: " + js}
	out, err := exec.Command(curl, append(base, "https://"+d.RESTCONFAddr+"/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/attester-supported-algos")...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"tpm20-hash":["ietf-tcg-algs:TPM_ALG_SHA1","ietf-tcg-algs:TPM_ALG_SHA256"`)) {
		t.Errorf("curl GET: %v %s", err, out)
	}
	nonce := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	out, err = exec.Command(curl, append(base, "-H", "Content-Type: "+js, "-d", `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"`+nonce+`","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[0,1]}]}}}`,
		"https://"+d.RESTCONFAddr+"/restconf/operations/ietf-tpm-remote-attestation:tpm20-challenge-response-attestation")...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"quote-data":"`)) {
		t.Errorf("curl POST challenge: %v %s", err, out)
	}
	// A wrong pin: curl refuses the server.
	bad := append([]string(nil), base...)
	bad[5] = "sha256//" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	if out, err := exec.Command(curl, append(bad, "https://"+d.RESTCONFAddr+"/restconf")...).CombinedOutput(); err == nil {
		t.Errorf("curl accepted a server with another key: %s", out)
	}
}
