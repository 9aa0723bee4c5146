package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/internal/syncbuf"
	"github.com/openriv/riv/pkg/endpoint"
)

// pki is a throwaway CA for the collector's API: its server certificate
// and client certificates with a role in their OU.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "RIV test API CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := &pki{cert: c, key: key, dir: dir}
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// issue makes a leaf: a server for 127.0.0.1 when ou is "", else a client
// of that OU. It returns the files and the tls.Certificate.
func (p *pki) issue(t testing.TB, name, ou string) (certFile, keyFile string, tc tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if ou == "" {
		tmpl.IPAddresses, tmpl.ExtKeyUsage = []net.IP{net.IPv4(127, 0, 0, 1)}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.Subject.OrganizationalUnit, tmpl.ExtKeyUsage = []string{ou}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", kd)
	tc, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, tc
}

func (p *pki) client(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 2 * time.Minute}
}

// serveConfig writes the collector's configuration for the routers in
// dirs (each line of devices is one list item).
func serveConfig(t testing.TB, dir string, p *pki, routers []string, devices ...string) string {
	t.Helper()
	cert, key, _ := p.issue(t, "api", "")
	for _, tok := range []string{"admin", "read"} {
		if err := os.WriteFile(filepath.Join(dir, tok+".token"), []byte(strings.Repeat(tok[:1], 40)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mfr, signers []string
	for _, r := range routers {
		ep, err := endpoint.Read(filepath.Join(r, "endpoints.json"))
		if err != nil {
			t.Fatal(err)
		}
		mfr, signers = append(mfr, ep.TrustAnchors), append(signers, ep.RIMSigner)
	}
	text := fmt.Sprintf(`listen: 127.0.0.1:0
tls: {cert: %s, key: %s, client_ca: %s}
data_dir: %s
tokens:
  admin: {file: admin.token}
  readonly: {file: read.token}
poll: {interval: 2s, timeout: 10s}
trust:
  manufacturers: [%s]
  rim_signers: [%s]
devices:
`, cert, key, filepath.Join(p.dir, "ca.pem"), filepath.Join(dir, "data"), strings.Join(mfr, ", "), strings.Join(signers, ", "))
	for _, d := range devices {
		text += "  - " + d + "\n"
	}
	f := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// withRIMs adds a RIM directory to a serveConfig file.
func withRIMs(t *testing.T, cfg, dir string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "poll: {interval: 2s, timeout: 10s}", "poll: {interval: 2s, timeout: 10s}\nrims: {dirs: ["+dir+"]}", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startServe runs riv-collector serve and returns its API.
func startServe(t testing.TB, dir, config string, p *pki) *collector {
	t.Helper()
	ready := filepath.Join(dir, "data", "collector.json")
	os.Remove(ready)
	cmd, b := startUntil(t, ready, "riv-collector", "serve", "--config", config)
	c := &collector{cmd: cmd, AdminToken: strings.Repeat("a", 40), ReadonlyToken: strings.Repeat("r", 40), client: p.client(nil)}
	if err := json.Unmarshal(b, c); err != nil || !strings.HasPrefix(c.URL, "https://") {
		t.Fatalf("collector.json: %v %s", err, b)
	}
	return c
}

// startUntil starts binary name with args, stopped (SIGTERM) when the
// test ends, and returns once it has written the file ready, with its
// content; its stderr is logged if the test failed.
func startUntil(t testing.TB, ready, name string, args ...string) (*exec.Cmd, []byte) {
	t.Helper()
	cmd := exec.Command(bin(t, name), args...)
	errb := &syncbuf.Buffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", name, errb.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(ready); err == nil {
			return cmd, b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s after 60 s\n%s", name, filepath.Base(ready), errb.String())
		}
	}
}

// TestCollectorServe runs `riv-collector serve` on a configuration file:
// config check, HTTPS with tokens and client certificates, policy sets
// per device, the inventory's expected serial, SIGHUP reload (a device
// added and one removed, the others polling on), and a kill -9 that
// loses no result.
func TestCollectorServe(t *testing.T) {
	clean := startRouter(t, "--serial", "RTR-SV1")
	odd := startRouter(t, "--serial", "RTR-SV2", "--attack", "unknown-binary")
	dir := t.TempDir()
	p := newPKI(t, dir)
	routers := []string{clean, odd}
	ep := func(r string) string { return filepath.Join(r, "endpoints.json") }
	cfg := serveConfig(t, dir, p, routers,
		"{endpoints: "+ep(clean)+"}",
		"{name: RTR-SV2-default, endpoints: "+ep(odd)+"}",
		"{name: RTR-SV2-strict, endpoints: "+ep(odd)+", policy: strict}",
		"{name: swapped, endpoints: "+ep(clean)+", serial: RTR-ELSEWHERE}",
		"{name: RTR-SV1-restconf, endpoints: "+ep(clean)+", transport: restconf}",
		"{name: RTR-SV1-snmp, endpoints: "+ep(clean)+", transport: snmp}")
	// The MIB carries no software inventory: RTR-SV1-snmp's RIMs come
	// from the vendor's directory (not from whichever NETCONF poll of the
	// same router happened to run first).
	withRIMs(t, cfg, filepath.Join(clean, "rims"))

	out, err := exec.Command(bin(t, "riv-collector"), "config", "check", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: 6 devices") {
		t.Fatalf("config check: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(bad, append(b, []byte("  - {name: x, endpoints: "+ep(clean)+", colour: red}\n")...), 0o600)
	out, err = exec.Command(bin(t, "riv-collector"), "config", "check", "--config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "bad.yaml:") || !strings.Contains(string(out), "colour: unknown key") {
		t.Errorf("config check of an unknown key: %v %s", err, out)
	}

	c := startServe(t, dir, cfg, p)
	devs := c.devices(t, 6)
	want := map[string]string{"RTR-SV1": "affirming", "RTR-SV2-default": "warning", "RTR-SV2-strict": "contraindicated", "swapped": "contraindicated", "RTR-SV1-restconf": "affirming",
		"RTR-SV1-snmp": "affirming"}
	for name, st := range want {
		if devs[name].Status != st {
			t.Errorf("%s: %s, want %s; reasons %v", name, devs[name].Status, st, devs[name].Reasons)
		}
	}
	if r := strings.Join(devs["swapped"].Reasons, "\n"); !strings.Contains(r, "RTR-ELSEWHERE") {
		t.Errorf("swapped: reasons do not name the expected serial: %s", r)
	}
	if r := strings.Join(devs["RTR-SV2-strict"].Reasons, "\n"); !strings.Contains(r, "policy strict") {
		t.Errorf("strict: reasons do not name the policy set: %s", r)
	}

	// Roles by client certificate (mTLS), and none without a token or
	// a certificate.
	_, _, adminCert := p.issue(t, "noc-admin", "admin")
	_, _, readCert := p.issue(t, "noc-viewer", "viewer")
	token := c.AdminToken
	c.AdminToken, c.client = "", p.client(&adminCert)
	if code, b := c.call(t, "POST", "/api/v1/devices/RTR-SV1/attest", ""); code != 200 {
		t.Errorf("attest with an admin certificate: %d %s", code, b)
	}
	c.client = p.client(&readCert)
	if code, _ := c.call(t, "GET", "/api/v1/devices", ""); code != 200 {
		t.Errorf("GET /devices with a read-only certificate: %d", code)
	}
	if code, _ := c.call(t, "POST", "/api/v1/devices/RTR-SV1/attest", ""); code != 403 {
		t.Errorf("attest with a read-only certificate: %d, want 403", code)
	}
	c.client = p.client(nil)
	if code, _ := c.call(t, "GET", "/api/v1/devices", ""); code != 401 {
		t.Errorf("GET /devices with neither: %d, want 401", code)
	}
	// The dashboard: its page for anyone, the fleet only for a browser
	// signed in with the read-only token (a Secure session cookie over
	// HTTPS), and never a wrong token.
	if code, page := c.call(t, "GET", "/", ""); code != 200 || !strings.Contains(string(page), "/assets/app.js") {
		t.Errorf("GET / of serve: %d %.80s", code, page)
	}
	if code, _ := c.send(t, "POST", "/login", "", "application/x-www-form-urlencoded", []byte("token=not-the-token")); code != 401 {
		t.Errorf("dashboard login with a wrong token: %d, want 401", code)
	}
	jar, _ := cookiejar.New(nil)
	browser := p.client(nil)
	browser.Jar = jar
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := browser.PostForm(c.URL+"/login", url.Values{"token": {c.ReadonlyToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly {
		t.Errorf("dashboard login: %d %v", resp.StatusCode, cs)
	}
	c.client = browser
	if code, _ := c.call(t, "GET", "/api/v1/devices", ""); code != 200 {
		t.Errorf("GET /devices with the dashboard's session: %d, want 200", code)
	}
	if code, _ := c.call(t, "POST", "/api/v1/devices/RTR-SV1/attest", ""); code != 403 {
		t.Errorf("attest with the dashboard's session: %d, want 403", code)
	}
	c.client = p.client(nil)
	c.AdminToken = token
	// A configured device is removed in the configuration, not by the API.
	if code, _ := c.call(t, "DELETE", "/api/v1/devices/swapped", c.AdminToken); code != 409 {
		t.Errorf("DELETE of a configured device: %d, want 409", code)
	}

	// SIGHUP: "swapped" goes, "RTR-SV1-again" comes; RTR-SV1 polls on.
	before := devs["RTR-SV1"].Polls
	serveConfig(t, dir, p, routers,
		"{endpoints: "+ep(clean)+"}",
		"{name: RTR-SV2-default, endpoints: "+ep(odd)+"}",
		"{name: RTR-SV2-strict, endpoints: "+ep(odd)+", policy: strict}",
		"{name: RTR-SV1-again, endpoints: "+ep(clean)+"}")
	withRIMs(t, cfg, filepath.Join(clean, "rims")) // the same trust: no device restarts for it
	c.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		devs = c.devices(t, 4)
		if _, gone := devs["swapped"]; !gone && devs["RTR-SV1-again"].Status == "affirming" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: %+v", devs)
		}
	}
	if devs["RTR-SV1"].Polls <= before {
		t.Errorf("RTR-SV1 polls %d after the reload, %d before: it was restarted", devs["RTR-SV1"].Polls, before)
	}

	// kill -9: every result the API showed is in the store after a restart.
	code, b := c.call(t, "GET", "/api/v1/devices/RTR-SV1/history?limit=1000", c.ReadonlyToken)
	var h1 struct{ History []struct{ ID int64 } }
	if code != 200 || json.Unmarshal(b, &h1) != nil || len(h1.History) == 0 {
		t.Fatalf("history: %d %s", code, b)
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	c2 := startServe(t, dir, cfg, p)
	code, b = c2.call(t, "GET", "/api/v1/devices/RTR-SV1/history?limit=1000", c2.ReadonlyToken)
	var h2 struct{ History []struct{ ID int64 } }
	if code != 200 || json.Unmarshal(b, &h2) != nil {
		t.Fatalf("history after kill -9: %d %s", code, b)
	}
	kept := map[int64]bool{}
	for _, r := range h2.History {
		kept[r.ID] = true
	}
	for _, r := range h1.History {
		if !kept[r.ID] {
			t.Errorf("after kill -9: result %d, shown before, is gone", r.ID)
		}
	}
	if devs := c2.devices(t, 4); devs["RTR-SV1"].Status != "affirming" || devs["RTR-SV2-strict"].Status != "contraindicated" {
		t.Errorf("after kill -9: %+v", devs)
	}
}
