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
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/schema"
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

// yanglint validates JSON against the official modules, loaded as the
// agent implements them (the modules and features of its schema).
func yanglint(t *testing.T, d *device.Device, kind, file string, extra ...string) {
	t.Helper()
	yanglintSchema(t, d.Server.Schema(), kind, file, extra...)
}

// yanglintSchema validates with the modules and features implemented in
// set.
func yanglintSchema(t *testing.T, set *schema.Set, kind, file string, extra ...string) {
	t.Helper()
	bin := testref.NeedTool(t, "yanglint")
	Y := testref.YangDir(t)
	args := append([]string{"-t", kind}, extra...)
	args = append(args, "-p", Y)
	var files []string
	for _, m := range set.Modules() {
		if m.Implemented {
			args = append(args, "-F", m.Name+":"+strings.Join(m.Features, ","))
			files = append(files, filepath.Join(Y, m.Name+"@"+m.Revision+".yang"))
		}
	}
	args = append(append(args, files...), file)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "err :") || strings.Contains(string(out), "[E]") {
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
	// The whole datastore validates as a complete one: mandatory nodes,
	// leafrefs, the YANG library with modules-state, both monitoring
	// modules.
	yanglint(t, d, "data", filepath.Join(dir, "all.json"))

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
	yanglint(t, d, "reply", filepath.Join(dir, "reply.json"), "-O", filepath.Join(dir, "oper.json"))

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
		{"list without key", "GET", "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm/name", js, "", "", 400, "invalid-value"},
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
		{"not acceptable", "GET", "/restconf/data", "text/html", "", "", 406, "invalid-value"},
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

// TestQueryParameters is item C's §4.8: content, depth, fields and
// with-defaults are implemented; anything else, or a parameter given
// twice, is a 400.
func TestQueryParameters(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	dir := t.TempDir()
	const rss = "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures"
	cases := []struct {
		query  string
		status int
		has    []string
		hasnt  []string
	}{
		{"depth=1", 200, []string{`{"ietf-tpm-remote-attestation:rats-support-structures":{}}`}, nil},
		{"depth=2", 200, []string{`"tpms":{}`, `"attester-supported-algos":{}`}, []string{`"tpm"`}},
		{"depth=3", 200, []string{`"tpm":[{"name":"tpm0"}]`}, []string{`"hardware-based"`}},
		{"fields=tpms/tpm(name;status)", 200, []string{`"name":"tpm0"`, `"status":"operational"`}, []string{`"hardware-based"`, `"attester-supported-algos"`}},
		{"fields=attester-supported-algos/tpm20-hash", 200, []string{`"tpm20-hash":[`}, []string{`"tpms"`, `"tpm20-asymmetric-signing"`}},
		{"content=config", 200, []string{`"firmware-version"`}, []string{`"hardware-based"`, `"status"`}},
		{"content=nonconfig", 200, []string{`"hardware-based":false`, `"name":"tpm0"`}, []string{`"firmware-version"`}},
		{"with-defaults=trim", 200, []string{`"tpm0"`}, nil},
		{"content=all&depth=unbounded&with-defaults=report-all", 200, []string{`"hardware-based"`}, nil},
		{"depth=0", 400, nil, nil},
		{"content=everything", 400, nil, nil},
		{"with-defaults=none", 400, nil, nil},
		{"fields=tpms/nosuch", 400, nil, nil},
		{"fields=tpms(", 400, nil, nil},
		{"depth=1&depth=2", 400, []string{"given twice"}, nil},
		{"frobnicate=1", 400, []string{"unknown query parameter"}, nil},
		{"filter=x", 400, []string{"not supported on this resource"}, nil},
		{"start-time=2026-01-01T00:00:00Z", 400, []string{"not supported on this resource"}, nil},
	}
	for i, tc := range cases {
		status, _, body := do(t, c, d, "GET", rss+"?"+tc.query, js, "", "")
		if status != tc.status {
			t.Errorf("?%s = %d, want %d: %.300s", tc.query, status, tc.status, body)
			continue
		}
		for _, h := range tc.has {
			if !bytes.Contains(body, []byte(h)) {
				t.Errorf("?%s lacks %s: %.400s", tc.query, h, body)
			}
		}
		for _, h := range tc.hasnt {
			if bytes.Contains(body, []byte(h)) {
				t.Errorf("?%s has %s: %.400s", tc.query, h, body)
			}
		}
		if status == 200 {
			f := filepath.Join(dir, fmt.Sprintf("q%d.json", i))
			os.WriteFile(f, body, 0o600)
			yanglint(t, d, "get", f)
		}
	}
	if status, _, _ := do(t, c, d, "GET", "/restconf?depth=1", js, "", ""); status != 400 {
		t.Errorf("a query parameter on /restconf = %d, want 400", status)
	}
}

// TestRestconfMonitoring is RFC 8040 §9.1: restconf-state lists the
// capabilities the server implements.
func TestRestconfMonitoring(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	status, _, body := do(t, c, d, "GET", "/restconf/data/ietf-restconf-monitoring:restconf-state/capabilities", js, "", "")
	if status != 200 {
		t.Fatalf("restconf-state = %d %s", status, body)
	}
	for _, cap := range []string{"urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit", "urn:ietf:params:restconf:capability:depth:1.0",
		"urn:ietf:params:restconf:capability:fields:1.0", "urn:ietf:params:restconf:capability:with-defaults:1.0"} {
		if !bytes.Contains(body, []byte(`"`+cap+`"`)) {
			t.Errorf("restconf-state lacks %s: %s", cap, body)
		}
	}
}

// TestEntityTags is RFC 8040 §3.4.1: data carries ETag and Last-Modified,
// and a client that has the representation gets 304.
func TestEntityTags(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	const p = "/restconf/data/ietf-tpm-remote-attestation:rats-support-structures"
	status, h, _ := do(t, c, d, "GET", p, js, "", "")
	tag, lm := h.Get("ETag"), h.Get("Last-Modified")
	if status != 200 || !strings.HasPrefix(tag, `"`) || lm == "" {
		t.Fatalf("GET = %d, ETag %q, Last-Modified %q", status, tag, lm)
	}
	if _, h2, _ := do(t, c, d, "GET", p, xmlType, "", ""); h2.Get("ETag") == tag {
		t.Error("the XML representation has the JSON one's entity tag")
	}
	for name, hdr := range map[string][2]string{"If-None-Match": {"If-None-Match", tag}, "If-Modified-Since": {"If-Modified-Since", lm}} {
		req, _ := http.NewRequest("GET", "https://"+d.RESTCONFAddr+p, nil)
		req.Header.Set("Accept", js)
		req.Header.Set(hdr[0], hdr[1])
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s: %d, want 304", name, resp.StatusCode)
		}
	}
}

// TestStrictInput is item C's typing and media rules: RFC 7951 types as
// yanglint reads them, and a body needs a Content-Type (415).
func TestStrictInput(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	const ch = "/restconf/operations/ietf-tpm-remote-attestation:tpm20-challenge-response-attestation"
	const lr = "/restconf/operations/ietf-tpm-remote-attestation:log-retrieval"
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
	}{
		{"pcr-index as strings", ch, js, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":["0"]}]}}}`, 400},
		{"uint64 as a number", lr, js, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"last-index-number":5}]}}`, 400},
		{"uint64 as a string", lr, js, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"last-index-number":"5"}]}}`, 200},
		{"nothing new", lr, js, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"last-index-number":"100000"}]}}`, 204},
		{"no content type", lr, "", `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios"}}`, 415},
	} {
		status, _, body := do(t, c, d, "POST", tc.path, js, tc.ctype, tc.body)
		if status != tc.status {
			t.Errorf("%s: %d, want %d: %.300s", tc.name, status, tc.status, body)
		}
	}
}

// TestErrorBodies: error bodies follow RFC 8040 §7.1 in both encodings —
// the error-type a value error has in NETCONF (application), an
// error-path in the encoding's instance-identifier form (module names in
// JSON, declared prefixes in XML) — and stay well-formed whatever the
// request carried.
func TestErrorBodies(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	const op = "/restconf/operations/ietf-tpm-remote-attestation:tpm20-challenge-response-attestation"
	bad := `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[99]}]}}}`
	status, _, body := do(t, c, d, "POST", op, js, js, bad)
	var e struct {
		Errors struct {
			Error []struct {
				Type string `json:"error-type"`
				Tag  string `json:"error-tag"`
				Path string `json:"error-path"`
			} `json:"error"`
		} `json:"ietf-restconf:errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || status != 400 || len(e.Errors.Error) != 1 {
		t.Fatalf("%d %s (%v)", status, body, err)
	}
	if x := e.Errors.Error[0]; x.Type != "application" || x.Tag != "invalid-value" || !strings.HasPrefix(x.Path, "/ietf-tpm-remote-attestation:") || strings.Contains(x.Path, "tpm:") {
		t.Errorf("JSON error %+v", x)
	}
	// An error the NETCONF layer reports (the must on the bank), its
	// error-path rewritten from the reply's declared prefixes.
	mustFail := `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SM3_256","pcr-index":[0]}]}}}`
	_, _, mbody := do(t, c, d, "POST", op, js, js, mustFail)
	e.Errors.Error = nil
	if err := json.Unmarshal(mbody, &e); err != nil || len(e.Errors.Error) != 1 {
		t.Fatalf("%s (%v)", mbody, err)
	}
	if x := e.Errors.Error[0]; x.Tag != "operation-failed" || !strings.HasPrefix(x.Path, "/ietf-tpm-remote-attestation:") || strings.Contains(x.Path, "tpm:") {
		t.Errorf("JSON error from NETCONF %+v", x)
	}
	status, _, body = do(t, c, d, "POST", op, xmlType, js, bad)
	x, err := schema.ParseXML(body, schema.Limits{})
	if err != nil || status != 400 {
		t.Fatalf("XML error body: %d %v %s", status, err, body)
	}
	var path *schema.XML
	for _, n := range x.Children[0].Children {
		if n.Name == "error-path" {
			path = n
		}
	}
	if path == nil {
		t.Fatalf("no error-path in %s", body)
	}
	pfx, _, _ := strings.Cut(strings.TrimPrefix(path.Text, "/"), ":")
	if ns, ok := path.Resolve(pfx); !ok || ns != "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation" {
		t.Errorf("error-path %q: prefix %q resolves to %q %v", path.Text, pfx, ns, ok)
	}
	_, _, body = do(t, c, d, "POST", "/restconf/operations/%01%02x", xmlType, js, "{}")
	if _, err := schema.ParseXML(body, schema.Limits{}); err != nil {
		t.Errorf("error body for a path with control characters is not well-formed: %v %q", err, body)
	}
}

// host-meta (RFC 8040 §3.1, RFC 6415) is served as an XRD to a client
// that asks for one, as RFC 8040's example does, or for anything; a
// client that accepts only something else gets 406.
func TestHostMeta(t *testing.T) {
	d := startDevice(t)
	c := client(d, d.ClientCert)
	for _, accept := range []string{"application/xrd+xml", "*/*", "", js} {
		status, h, body := do(t, c, d, "GET", "/.well-known/host-meta", accept, "", "")
		if status != 200 || h.Get("Content-Type") != "application/xrd+xml" || !strings.Contains(string(body), `rel="restconf" href="/restconf"`) {
			t.Errorf("Accept %q: %d %s %s", accept, status, h.Get("Content-Type"), body)
		}
	}
	if status, _, body := do(t, c, d, "GET", "/.well-known/host-meta", "text/html", "", ""); status != 406 || !strings.Contains(string(body), "invalid-value") {
		t.Errorf("Accept text/html: %d %s", status, body)
	}
}
