package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/collector/notify"
)

// riv-collector dev (issue 13, first increment): the zero-setup collector
// polling real routers, its API with the two roles, signed EARs a relying
// party checks with the key the API publishes, and state that survives a
// restart.

type collector struct {
	URL           string `json:"url"`
	AdminToken    string `json:"admin_token"`
	ReadonlyToken string `json:"readonly_token"`
	cmd           *exec.Cmd
	client        *http.Client // nil: http.DefaultClient
}

func startCollector(t *testing.T, dir string, args ...string) *collector {
	t.Helper()
	os.Remove(filepath.Join(dir, "collector.json"))
	cmd := exec.Command(bin(t, "riv-collector"), append([]string{"dev", "--dir", dir, "--interval", "2s"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "collector.json")); err == nil {
			c := &collector{cmd: cmd}
			if err := json.Unmarshal(b, c); err != nil || c.URL == "" || c.AdminToken == "" || c.ReadonlyToken == "" {
				t.Fatalf("collector.json: %v %s", err, b)
			}
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no collector.json after 30 s\n%s", errb.String())
		}
	}
}

func (c *collector) call(t testing.TB, method, path, token string) (int, []byte) {
	t.Helper()
	return c.send(t, method, path, token, "", nil)
}

// send is call with a body of contentType.
func (c *collector) send(t testing.TB, method, path, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, c.URL+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type apiDevice struct {
	Name    string   `json:"name"`
	State   string   `json:"state"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	Polls   int      `json:"polls"`
	// Collector appraised it (several share a fleet on PostgreSQL).
	Collector string `json:"collector"`
}

// devices waits until every device has been appraised and returns them.
func (c *collector) devices(t *testing.T, n int) map[string]apiDevice {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, b := c.call(t, "GET", "/api/v1/devices", c.ReadonlyToken)
		var v struct{ Devices []apiDevice }
		if code != 200 || json.Unmarshal(b, &v) != nil {
			t.Fatalf("GET /devices: %d %s", code, b)
		}
		out := map[string]apiDevice{}
		for _, d := range v.Devices {
			if d.State == "appraised" {
				out[d.Name] = d
			}
		}
		if len(out) == n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices not all appraised after 60 s: %s", b)
		}
	}
}

func TestCollectorDev(t *testing.T) {
	clean := startRouter(t, "--serial", "RTR-COL1")
	bad := startRouter(t, "--serial", "RTR-COL2", "--attack", "tampered-kernel")
	dir := t.TempDir()
	eps := []string{filepath.Join(clean, "endpoints.json"), filepath.Join(bad, "endpoints.json")}
	c := startCollector(t, dir, eps...)
	devs := c.devices(t, 2)
	if devs["RTR-COL1"].Status != "affirming" || devs["RTR-COL2"].Status != "contraindicated" || !strings.Contains(strings.Join(devs["RTR-COL2"].Reasons, "\n"), "vmlinuz") {
		t.Fatalf("verdicts: %+v", devs)
	}
	// The fleet's posture, and the same in the metrics.
	code, b := c.call(t, "GET", "/api/v1/posture", c.ReadonlyToken)
	var posture struct {
		Devices int            `json:"devices"`
		ByState map[string]int `json:"by_state"`
	}
	if code != 200 || json.Unmarshal(b, &posture) != nil || posture.Devices != 2 || posture.ByState["affirming"] != 1 || posture.ByState["contraindicated"] != 1 {
		t.Errorf("posture: %d %s", code, b)
	}
	code, b = c.call(t, "GET", "/metrics", "")
	for _, want := range []string{`riv_collector_devices{state="affirming"} 1`, `riv_collector_devices{state="contraindicated"} 1`,
		`riv_collector_polls_total{outcome="affirming"}`, `riv_collector_poll_duration_seconds_count`, `riv_collector_polls_in_flight`,
		`riv_collector_devices_by_policy{policy="riv-default",state="contraindicated"} 1`, `riv_collector_poll_failures_total{reason="executables"}`,
		`riv_collector_device_quote_duration_seconds_count`, `riv_collector_polls_queued 0`} {
		if code != 200 || !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q (%d)", want, code)
		}
	}
	// Roles: no token is 401, the read-only token cannot act (403), the
	// admin token can; a device that does not exist is 404.
	if code, _ := c.call(t, "GET", "/api/v1/devices", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := c.call(t, "GET", "/api/v1/devices", "not-a-token"); code != 401 {
		t.Errorf("a wrong token: %d", code)
	}
	if code, _ := c.call(t, "POST", "/api/v1/devices/RTR-COL1/attest", c.ReadonlyToken); code != 403 {
		t.Errorf("attest with the read-only token: %d", code)
	}
	if code, _ := c.call(t, "GET", "/api/v1/devices/RTR-NONE", c.ReadonlyToken); code != 404 {
		t.Errorf("an unknown device: %d", code)
	}
	before := devs["RTR-COL1"].Polls
	code, b = c.call(t, "POST", "/api/v1/devices/RTR-COL1/attest", c.AdminToken)
	var d apiDevice
	if code != 200 || json.Unmarshal(b, &d) != nil || d.Polls <= before || d.Status != "affirming" {
		t.Fatalf("attest now: %d %s (polls before %d)", code, b, before)
	}
	// The EAR verifies with the key of /keys, with rivctl and veraison's
	// arc.
	code, jwks := c.call(t, "GET", "/api/v1/keys", "")
	var keys struct{ Keys []json.RawMessage }
	if code != 200 || json.Unmarshal(jwks, &keys) != nil || len(keys.Keys) != 1 {
		t.Fatalf("GET /keys: %d %s", code, jwks)
	}
	jwk := filepath.Join(t.TempDir(), "ear.jwk")
	os.WriteFile(jwk, keys.Keys[0], 0o600)
	code, tok := c.call(t, "GET", "/api/v1/devices/RTR-COL2/ear", c.ReadonlyToken)
	if code != 200 {
		t.Fatalf("GET ear: %d %s", code, tok)
	}
	jwt := filepath.Join(t.TempDir(), "col2.jwt")
	os.WriteFile(jwt, tok, 0o600)
	if code, out, errs := runBin(t, "rivctl", "ear", "verify", "--key", jwk, jwt); code != 1 || !strings.Contains(out, "CONTRAINDICATED") {
		t.Errorf("rivctl ear verify: %d %s %s", code, out, errs)
	}
	if code, out, errs := runBin(t, "arc", "verify", "--alg", "ES256", "--pkey", jwk, jwt); code != 0 {
		t.Errorf("arc verify: %d %s %s", code, out, errs)
	}
	// Devices added and removed through the API (admin): the body is an
	// endpoints.json object with an optional name.
	epb, _ := os.ReadFile(eps[0])
	var epm map[string]any
	json.Unmarshal(epb, &epm)
	epm["name"] = "RTR-COL1-API"
	body, _ := json.Marshal(epm)
	post := func(token string, b []byte) (int, []byte) {
		t.Helper()
		return c.send(t, "POST", "/api/v1/devices", token, "application/json", b)
	}
	if code, _ := post(c.ReadonlyToken, body); code != 403 {
		t.Errorf("add with the read-only token: %d", code)
	}
	for _, bad := range []string{`{"name": "x", "colour": "blue"}`, `not json`, `{"name": "a/b", "netconf_tls": "127.0.0.1:1"}`} {
		if code, out := post(c.AdminToken, []byte(bad)); code != 400 {
			t.Errorf("add %s: %d %s", bad, code, out)
		}
	}
	if code, out := post(c.AdminToken, bytes.Repeat([]byte(" "), 100<<10)); code != 413 && code != 400 {
		t.Errorf("an oversized body: %d %s", code, out)
	}
	if code, out := post(c.AdminToken, body); code != 201 {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, _ := post(c.AdminToken, body); code != 409 {
		t.Errorf("add twice: %d", code)
	}
	if got := c.devices(t, 3); got["RTR-COL1-API"].Status != "affirming" {
		t.Errorf("the added device: %+v", got["RTR-COL1-API"])
	}
	if code, _ := c.call(t, "DELETE", "/api/v1/devices/RTR-COL1-API", c.AdminToken); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := c.call(t, "DELETE", "/api/v1/devices/RTR-COL1-API", c.AdminToken); code != 404 {
		t.Errorf("delete twice: %d", code)
	}
	// RIM uploads (admin) are verified before they are used.
	upload := func(b []byte) (int, []byte) {
		t.Helper()
		return c.send(t, "POST", "/api/v1/rims?name=image-2.0.cose", c.AdminToken, "application/octet-stream", b)
	}
	signed, err := os.ReadFile(filepath.Join(clean, "rims", "image-2.0.cose"))
	if err != nil {
		t.Fatal(err)
	}
	if code, out := upload(signed); code != 200 || !strings.Contains(string(out), `"policies"`) {
		t.Errorf("upload a vendor's RIM: %d %s", code, out)
	}
	tampered := bytes.Clone(signed)
	tampered[len(tampered)-1] ^= 1
	if code, out := upload(tampered); code != 422 || !strings.Contains(string(out), "not signed by a trusted vendor") {
		t.Errorf("upload a tampered RIM: %d %s", code, out)
	}
	if code, out := upload([]byte("not a RIM at all")); code != 422 {
		t.Errorf("upload garbage: %d %s", code, out)
	}
	// A verdict change reaches an open event stream: the clean router
	// runs a binary no RIM lists.
	sreq, _ := http.NewRequest("GET", c.URL+"/api/v1/events", nil)
	sreq.Header.Set("Authorization", "Bearer "+c.ReadonlyToken)
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil || sresp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, sresp)
	}
	defer sresp.Body.Close()
	got := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(sresp.Body)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	measure(t, clean, "/usr/bin/evil", "not in any RIM")
	if code, b := c.call(t, "POST", "/api/v1/devices/RTR-COL1/attest", c.AdminToken); code != 200 || !strings.Contains(string(b), `"status": "warning"`) {
		t.Fatalf("attest after the measurement: %d %s", code, b)
	}
	for deadline := time.After(20 * time.Second); ; {
		select {
		case line, ok := <-got:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"kind":"verdict","device":"RTR-COL1","status":"warning","previous":"affirming"`) {
				goto streamed
			}
			continue
		case <-deadline:
			t.Fatal("no verdict event within 20 s")
		}
	}
streamed:
	// History, then a restart on the same directory: the same EAR key,
	// the history kept.
	code, b = c.call(t, "GET", "/api/v1/devices/RTR-COL1/history", c.ReadonlyToken)
	var h struct{ History []json.RawMessage }
	if code != 200 || json.Unmarshal(b, &h) != nil || len(h.History) < 2 {
		t.Fatalf("history: %d %s", code, b)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()
	c2 := startCollector(t, dir, eps...)
	if _, jwks2 := c2.call(t, "GET", "/api/v1/keys", ""); !bytes.Equal(jwks, jwks2) {
		t.Errorf("the EAR key changed across a restart:\n%s\n%s", jwks, jwks2)
	}
	// The verdicts kept are shown at once, before the first poll.
	if devs := c2.devices(t, 2); devs["RTR-COL1"].Status != "warning" || devs["RTR-COL2"].Status != "contraindicated" {
		t.Errorf("verdicts after the restart: %+v", devs)
	}
	var h2 struct{ History []json.RawMessage }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, b = c2.call(t, "GET", "/api/v1/devices/RTR-COL1/history", c2.ReadonlyToken)
		if code != 200 || json.Unmarshal(b, &h2) != nil {
			t.Fatalf("history after the restart: %d %s", code, b)
		}
		if len(h2.History) > len(h.History) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history after the restart: %d entries, before %d: no poll within 20 s", len(h2.History), len(h.History))
		}
	}
}

// TestCollectorWebhook: state changes are POSTed to a webhook, signed;
// a receiver that fails gets them again; one that is down while the
// collector is killed (SIGKILL) gets them after the restart.
func TestCollectorWebhook(t *testing.T) {
	secret := "a-webhook-secret-of-some-length"
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	var mu sync.Mutex
	failing, attempts := 2, 0
	seen := map[string][]byte{} // by delivery id
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if failing != 0 {
			if failing > 0 {
				failing--
			}
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		if !notify.Verify([]byte(secret), body, r.Header.Get(notify.SignatureHeader)) {
			t.Errorf("a delivery with a bad signature: %q", r.Header.Get(notify.SignatureHeader))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		seen[r.Header.Get(notify.DeliveryHeader)] = body
	}))
	defer rx.Close()
	received := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range seen {
			if strings.Contains(string(b), want) {
				return true
			}
		}
		return false
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(45 * time.Second); !received(want); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("no delivery with %s after %d attempts: %v", want, attempts, seen)
			}
		}
	}
	router := startRouter(t, "--serial", "RTR-WH")
	dir := t.TempDir()
	args := []string{"--webhook", rx.URL, "--webhook-secret", secretFile, filepath.Join(router, "endpoints.json")}
	c := startCollector(t, dir, args...)
	waitFor(`"kind":"verdict","device":"RTR-WH","status":"affirming"`)
	mu.Lock()
	if attempts < 3 {
		t.Errorf("%d attempts: the failures were not retried", attempts)
	}
	failing = -1 // down from now on
	mu.Unlock()
	// A change while the receiver is down, then the collector killed.
	measure(t, router, "/usr/bin/evil", "not in any RIM")
	if code, b := c.call(t, "POST", "/api/v1/devices/RTR-WH/attest", c.AdminToken); code != 200 || !strings.Contains(string(b), `"status": "warning"`) {
		t.Fatalf("attest: %d %s", code, b)
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	if received(`"status":"warning"`) {
		t.Fatal("delivered while the receiver was down")
	}
	mu.Lock()
	failing = 0
	mu.Unlock()
	startCollector(t, dir, args...)
	waitFor(`"kind":"verdict","device":"RTR-WH","status":"warning","previous":"affirming"`)
	// The on-demand re-attestation superseded the results before it.
	waitFor(`"kind":"superseded","device":"RTR-WH","status":"warning","previous":"affirming"`)
}
