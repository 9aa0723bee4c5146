package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veraison/ear"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/syncbuf"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
)

// Routers built the real way (issue 12): riv-router manufactures an
// swtpm, provisions it with riv-agent provision, boots it and runs
// riv-agent serve; rivctl appraises it over NETCONF-TLS.

// startRouter runs riv-router in its own directory until the test ends
// and returns the directory.
func startRouter(t *testing.T, args ...string) string {
	t.Helper()
	return launchRouter(t, args...)()
}

// launchRouter starts riv-router; the function it returns waits until
// the router serves and returns its directory. Routers launched together
// boot in parallel.
func launchRouter(t *testing.T, args ...string) func() string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin(t, "riv-router"), append([]string{"--dir", dir}, args...)...)
	errb := &syncbuf.Buffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	return func() string {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "endpoints.json")); err == nil {
				return dir
			}
			select {
			case <-exited:
				t.Fatalf("riv-router %v exited:\n%s", args, errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("riv-router %v: no endpoints.json after 90 s\n%s", args, errb.String())
			}
		}
	}
}

type verdict struct {
	Status   string   `json:"status"`
	Reasons  []string `json:"reasons"`
	Rebooted bool     `json:"rebooted"`
	Error    string   `json:"error"`
}

// measure has the router in dir run a file that no RIM lists, as path
// (`riv-router measure`): the IMA entry and PCR 10 extend of a change at
// run time.
func measure(t *testing.T, dir, path, content string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "unlisted")
	if err := os.WriteFile(f, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runBin(t, "riv-router", "measure", "--dir", dir, "--as", path, f); code != 0 {
		t.Fatalf("measure: exit %d %s %s", code, out, errs)
	}
}

// attestTLS appraises the router in dir over NETCONF-TLS.
func attestTLS(t *testing.T, dir string, extra ...string) (int, verdict) {
	t.Helper()
	code, out, stderr := runBin(t, "rivctl", append(append([]string{"attest", "--json", "--transport", "tls"}, extra...), filepath.Join(dir, "endpoints.json"))...)
	var v verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("rivctl attest: %v\nstdout %s\nstderr %s", err, out, stderr)
	}
	return code, v
}

// TestRouterFirmwareLogs boots captured firmware logs of two different
// machines (an HP and a Lenovo laptop, secure boot on) into swtpm: each
// router is affirming over NETCONF-TLS from riv-agent serve.
func TestRouterFirmwareLogs(t *testing.T) {
	for _, log := range []string{"hp1.bin", "p511.bin"} {
		t.Run(log, func(t *testing.T) {
			t.Parallel()
			dir := startRouter(t, "--bios-log", testref.Path(t, "eventlogs", "uefi", "ibmtss", log), "--serial", "RTR-"+strings.TrimSuffix(log, ".bin"))
			code, v := attestTLS(t, dir)
			if code != 0 || v.Status != "affirming" {
				t.Fatalf("exit %d, %+v", code, v)
			}
			// The log the agent serves is the captured one, byte for byte.
			served, _ := os.ReadFile(filepath.Join(dir, "securityfs", "tpm0", "binary_bios_measurements"))
			if !bytes.Equal(served, testref.Read(t, "eventlogs", "uefi", "ibmtss", log)) {
				t.Error("the served firmware log is not the captured one")
			}
		})
	}
}

// TestRouterRuntimeAndReboot: a file measured at run time, the way IMA
// does, appears by name in the next verdict; a reboot is a re-attestation
// from the fresh boot's log, with the same identity. One verifier keeps
// the device's state across the polls, as the collector does.
func TestRouterRuntimeAndReboot(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-RUN")
	appraise := stateful(t, dir, true)
	r1 := appraise()
	if r1.Status != ear.TrustTierAffirming {
		t.Fatalf("clean boot: %v %v", r1.Status, r1.Reasons)
	}
	measure(t, dir, "/usr/local/sbin/backdoor", "#!/bin/sh\necho pwned\n")
	r2 := appraise()
	if r2.Status == ear.TrustTierAffirming || !strings.Contains(strings.Join(r2.Reasons, "\n"), "/usr/local/sbin/backdoor") {
		t.Fatalf("after the run-time measurement: %v %v", r2.Status, r2.Reasons)
	}
	if code, out, stderr := runBin(t, "riv-router", "reboot", "--dir", dir); code != 0 {
		t.Fatalf("reboot: exit %d %s %s", code, out, stderr)
	}
	r3 := appraise()
	if r3.Status != ear.TrustTierAffirming || !r3.Rebooted || r3.Clock.ResetCount != r1.Clock.ResetCount+1 {
		t.Fatalf("after the reboot: %v rebooted=%v resetCount %d -> %d %v", r3.Status, r3.Rebooted, r1.Clock.ResetCount, r3.Clock.ResetCount, r3.Reasons)
	}
	// measure and reboot need a running router.
	idle := t.TempDir()
	if code, _, stderr := runBin(t, "riv-router", "reboot", "--dir", idle); code != 2 && code != 3 {
		t.Errorf("reboot of no router: exit %d %s", code, stderr)
	}
}

// TestAgentConfigCheck runs riv-agent config check on the config
// riv-router wrote, and on broken copies of it: the one line on stderr
// names the file, the line and the key.
func TestAgentConfigCheck(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-CFG")
	good, err := os.ReadFile(filepath.Join(dir, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runBin(t, "riv-agent", "config", "check", filepath.Join(dir, "agent.yaml")); code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("good config: exit %d %s %s", code, out, stderr)
	}
	lines := strings.Split(string(good), "\n")
	lineOf := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return i + 1
			}
		}
		t.Fatalf("no %q in agent.yaml", prefix)
		return 0
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown key", "name: tpm0\n", "name: tpm0\nbogus_key: 1\n", "bogus_key: unknown key"},
		{"bad log path", filepath.Join(dir, "securityfs", "tpm0"), filepath.Join(dir, "nowhere"), "logs.bios: " + filepath.Join(dir, "nowhere")},
		{"missing certificate", filepath.Join(dir, "certs", "iak.pem"), filepath.Join(dir, "certs", "gone.pem"), "identity.iak.cert: " + filepath.Join(dir, "certs", "gone.pem") + ": no such file or directory"},
		{"not a certificate", filepath.Join(dir, "certs", "idevid.pem"), filepath.Join(dir, "agent.yaml"), "identity.idevid.cert: " + filepath.Join(dir, "agent.yaml") + ": no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "agent.yaml")
			text := strings.Replace(string(good), tc.old, tc.new, 1)
			if text == string(good) {
				t.Fatalf("%q not in the config", tc.old)
			}
			os.WriteFile(bad, []byte(text), 0o600)
			code, _, stderr := runBin(t, "riv-agent", "config", "check", bad)
			if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	// The unknown key's line is the line it is on.
	text := strings.Replace(string(good), "name: tpm0\n", "name: tpm0\nbogus_key: 1\n", 1)
	bad := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(bad, []byte(text), 0o600)
	_, _, stderr := runBin(t, "riv-agent", "config", "check", bad)
	if want := bad + ":" + itoa(lineOf("name: tpm0")+1) + ": bogus_key: unknown key"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestRouterLineCards: a router with two line cards, each its own swtpm
// and IAK; the second booted a tampered kernel. Over NETCONF-TLS the
// verdict has one entry per TPM: the control card and the first line card
// affirming, the tampered card contraindicated with reasons naming it,
// and the device contraindicated; the EAR has a submod per TPM and the
// device's aggregate.
func TestRouterLineCards(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-LC", "--line-cards", "2", "--card-attack", "tampered-kernel")
	code, out, stderr := runBin(t, "rivctl", "attest", "--json", "--transport", "tls", filepath.Join(dir, "endpoints.json"))
	var v struct {
		verdict
		EAR  string `json:"ear"`
		TPMs []struct {
			Name    string   `json:"name"`
			Status  string   `json:"status"`
			Reasons []string `json:"reasons"`
		} `json:"tpms"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("rivctl attest: %v\n%s\n%s", err, out, stderr)
	}
	if code != 1 || v.Status != "contraindicated" {
		t.Fatalf("exit %d, status %s, reasons %v", code, v.Status, v.Reasons)
	}
	got := map[string]string{}
	for _, tp := range v.TPMs {
		got[tp.Name] = tp.Status
		if tp.Name == "lc2" && !strings.Contains(strings.Join(tp.Reasons, "\n"), "vmlinuz") {
			t.Errorf("lc2's reasons do not name the tampered kernel: %v", tp.Reasons)
		}
		if tp.Name != "lc2" && len(tp.Reasons) > 0 {
			t.Errorf("%s has reasons %v", tp.Name, tp.Reasons)
		}
	}
	if want := map[string]string{"tpm0": "affirming", "lc1": "affirming", "lc2": "contraindicated"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("per-TPM verdicts %v, want %v", got, want)
	}
	for _, r := range v.Reasons {
		if !strings.HasPrefix(r, "lc2: ") {
			t.Errorf("device reason %q does not name the card", r)
		}
	}
	parts := strings.Split(v.EAR, ".")
	if len(parts) != 3 {
		t.Fatalf("EAR %q", v.EAR)
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var ar struct {
		Submods map[string]struct {
			Status string `json:"ear.status"`
		} `json:"submods"`
	}
	if err := json.Unmarshal(claims, &ar); err != nil {
		t.Fatal(err)
	}
	sub := map[string]string{}
	for k, s := range ar.Submods {
		sub[k] = s.Status
	}
	if want := map[string]string{"device": "contraindicated", "tpm0": "affirming", "lc1": "affirming", "lc2": "contraindicated"}; fmt.Sprint(sub) != fmt.Sprint(want) {
		t.Errorf("EAR submods %v, want %v", sub, want)
	}
	// A reboot resets every card's TPM; the next poll of a verifier that
	// keeps state re-attests each, from its fresh log.
	v1, target := routerVerifier(t, dir, false)
	appraise := func() *verifier.Result { return appraiseTarget(t, v1, target) }
	before := appraise()
	if code, out, stderr := runBin(t, "riv-router", "reboot", "--dir", dir); code != 0 {
		t.Fatalf("reboot: exit %d %s %s", code, out, stderr)
	}
	after := appraise()
	if !after.Rebooted || len(after.TPMs) != 3 || len(before.TPMs) != 3 {
		t.Fatalf("after the reboot: rebooted %v, %d TPMs", after.Rebooted, len(after.TPMs))
	}
	for i := range after.TPMs {
		if after.TPMs[i].Clock.ResetCount != before.TPMs[i].Clock.ResetCount+1 {
			t.Errorf("%s: resetCount %d -> %d", after.TPMs[i].Name, before.TPMs[i].Clock.ResetCount, after.TPMs[i].Clock.ResetCount)
		}
		if want := before.TPMs[i].Status; after.TPMs[i].Status != want {
			t.Errorf("%s after the reboot: %v, before %v", after.TPMs[i].Name, after.TPMs[i].Status, want)
		}
	}
	// The state a collector keeps covers every card: restored into
	// another verifier (a restarted collector), the next poll sees no
	// reboot of any card and keeps lc2's finding.
	snap, err := v1.Snapshot(target.Name)
	if err != nil {
		t.Fatal(err)
	}
	var kept struct{ TPMs map[string]json.RawMessage }
	if err := json.Unmarshal(snap, &kept); err != nil || len(kept.TPMs) != 3 {
		t.Fatalf("snapshot of %d TPMs (%v), want the device's and its 2 cards': %s", len(kept.TPMs), err, snap)
	}
	v2, _ := routerVerifier(t, dir, false)
	if err := v2.Restore(target.Name, snap); err != nil {
		t.Fatal(err)
	}
	resumed := appraiseTarget(t, v2, target)
	if resumed.Rebooted || len(resumed.TPMs) != 3 {
		t.Fatalf("after the restore: rebooted %v, %d TPMs", resumed.Rebooted, len(resumed.TPMs))
	}
	for i, tp := range resumed.TPMs {
		if tp.Status != after.TPMs[i].Status || strings.Join(tp.Reasons, "\n") != strings.Join(after.TPMs[i].Reasons, "\n") {
			t.Errorf("%s after the restore: %v %v, before %v %v", tp.Name, tp.Status, tp.Reasons, after.TPMs[i].Status, after.TPMs[i].Reasons)
		}
	}
}

// TestAgentReloadAndDrain: SIGHUP makes riv-agent serve apply a changed
// config — a NACM rule, a new NETCONF user, a changed SNMP password —
// without ending the sessions open; a config that does not validate is
// refused with the old one kept; SIGTERM drains and exits 0.
func TestAgentReloadAndDrain(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-HUP")
	st := readRouterState(t, dir)
	ep, err := verifier.ReadEndpoints(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := verifier.LoadSSHKey(ep.SSHPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sess, err := netconf.DialSSH(ctx, ep.NetconfSSH, ep.SSHUser, key)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	nonce := make([]byte, 32)
	rand.Read(nonce)
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 10}}}
	if _, err := sess.Challenge(ctx, nonce, sel); err != nil {
		t.Fatalf("challenge before the reload: %v", err)
	}
	snmpName := func(pass string) (string, error) {
		out, err := exec.Command(testref.NeedTool(t, "snmpget"), "-v3", "-l", "authPriv", "-u", "riv", "-a", "SHA-256", "-A", pass,
			"-x", "AES", "-X", ep.SNMPPrivKey, "-m", "", "-On", "-r", "0", "-t", "2", ep.SNMP, "1.3.6.1.2.1.1.5.0").CombinedOutput()
		return string(out), err
	}
	if out, err := snmpName(ep.SNMPAuthKey); err != nil || !strings.Contains(out, "RTR-HUP") {
		t.Fatalf("snmpget before the reload: %v %s", err, out)
	}

	// The new config: verifiers may no longer quote, a new user ops
	// with its own key, a new SNMP auth password.
	cfgPath := filepath.Join(dir, "agent.yaml")
	orig, _ := os.ReadFile(cfgPath)
	_, opsKey, _ := ed25519.GenerateKey(rand.Reader)
	opsPub, _ := ssh.NewPublicKey(opsKey.Public())
	os.WriteFile(filepath.Join(dir, "users", "ops.pub"), ssh.MarshalAuthorizedKey(opsPub), 0o600)
	os.WriteFile(filepath.Join(dir, "snmp", "riv.auth"), []byte("a-new-auth-password\n"), 0o600)
	cfg := strings.Replace(string(orig), `{group: verifiers, operation: "*", action: permit}`, `{group: verifiers, operation: "*", action: deny}`, 1)
	cfg = strings.Replace(cfg, "netconf:\n  users:\n", "netconf:\n  users:\n    - name: ops\n      authorized_keys: "+strconv.Quote(filepath.Join(dir, "users", "ops.pub"))+"\n", 1)
	if cfg == string(orig) {
		t.Fatal("config not changed")
	}
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	hup := func(want string) {
		t.Helper()
		before, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		if err := syscall.Kill(st.AgentPID, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			now, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			if strings.Contains(string(now[len(before):]), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the agent's log after SIGHUP:\n%s", want, now[len(before):])
			}
		}
	}
	hup("reloaded users, NACM and SNMP users")
	// The open session is still there, and NACM now denies it.
	_, err = sess.Challenge(ctx, nonce, sel)
	var re *netconf.RPCError
	if !errors.As(err, &re) || len(re.Errors) == 0 || string(re.Errors[0].Tag) != "access-denied" {
		t.Fatalf("challenge on the open session after the reload: %v, want access-denied", err)
	}
	ops, err := netconf.DialSSH(ctx, ep.NetconfSSH, "ops", opsKey)
	if err != nil {
		t.Fatalf("the new user cannot log in: %v", err)
	}
	ops.Close()
	if out, err := snmpName(ep.SNMPAuthKey); err == nil {
		t.Errorf("the old SNMP password still works: %s", out)
	}
	if out, err := snmpName("a-new-auth-password"); err != nil || !strings.Contains(out, "RTR-HUP") {
		t.Errorf("snmpget with the new password: %v %s", err, out)
	}
	// A config that does not validate changes nothing.
	os.WriteFile(cfgPath, []byte(cfg+"bogus: 1\n"), 0o600)
	hup("reload refused")
	if _, err := netconf.DialSSH(ctx, ep.NetconfSSH, "ops", opsKey); err != nil {
		t.Errorf("after a refused reload the running config changed: %v", err)
	}
	os.WriteFile(cfgPath, orig, 0o600)

	// SIGTERM: the agent drains and exits 0 (riv-router reports an agent
	// that exits otherwise).
	if err := syscall.Kill(st.AgentPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		log, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		if strings.Contains(string(log), "draining") && strings.Contains(string(log), "msg=stopped") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drain in the agent's log:\n%s", log)
		}
	}
	if _, err := sess.Challenge(ctx, nonce, sel); err == nil {
		t.Error("the session outlived the agent")
	}
}

type routerState struct {
	AgentPID int `json:"agent_pid"`
}

func readRouterState(t *testing.T, dir string) routerState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "router.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st routerState
	if err := json.Unmarshal(b, &st); err != nil || st.AgentPID == 0 {
		t.Fatalf("router.json: %v %s", err, b)
	}
	return st
}

// TestRouterInventory: the router's software inventory over RESTCONF
// (mutual TLS with the IDevID as server identity), a RIM fetched by
// tag-id that rivctl rim verify accepts against the vendor's anchor, and
// an appraisal with no local RIMs at all, from the RIMs the router
// carries.
func TestRouterInventory(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-INV")
	ep, err := verifier.ReadEndpoints(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(ep.TLSClientCert, ep.TLSClientKey)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := verifier.LoadPool(ep.TrustAnchors)
	if err != nil {
		t.Fatal(err)
	}
	// An IDevID names a device, not a host: verify the chain, not a name.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		}}}}
	get := func(path string, into any) {
		t.Helper()
		req, _ := http.NewRequest("GET", ep.RESTCONF+"/restconf/data/"+path, nil)
		req.Header.Set("Accept", "application/yang-data+json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var inv struct {
		SI struct {
			Components []struct {
				TagID string `json:"tag-id"`
				Name  string `json:"software-name"`
			} `json:"component"`
		} `json:"riv-software-inventory:software-inventory"`
	}
	get("riv-software-inventory:software-inventory", &inv)
	tag := ""
	for _, c := range inv.SI.Components {
		if strings.HasSuffix(c.Name, "-image") {
			tag = c.TagID
		}
	}
	if len(inv.SI.Components) < 4 || tag == "" {
		t.Fatalf("inventory: %+v", inv.SI.Components)
	}
	var rims struct {
		RIMs []struct {
			Digest    string `json:"digest"`
			MediaType string `json:"media-type"`
			Content   []byte `json:"content"`
		} `json:"riv-software-inventory:rim"`
	}
	// The component fetched by tag-id is valid riv-software-inventory
	// data (yanglint, with the embedded modules): as the device serves
	// it, in the one-entry tree it came from.
	var comp map[string]json.RawMessage
	get("riv-software-inventory:software-inventory/component="+url.PathEscape(tag), &comp)
	entries, ok := comp["riv-software-inventory:component"]
	if !ok {
		t.Fatalf("component %s: keys %v", tag, comp)
	}
	doc := filepath.Join(t.TempDir(), "component.json")
	os.WriteFile(doc, []byte(`{"riv-software-inventory:software-inventory":{"component":`+string(entries)+`}}`), 0o600)
	yang := filepath.Join(testref.Root(t), "yang")
	if out, err := exec.Command(testref.NeedTool(t, "yanglint"), "-t", "data", "-p", yang, "-F", "ietf-tcg-algs:tpm20",
		filepath.Join(yang, "riv-software-inventory@2026-12-01.yang"), doc).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("yanglint on component %s: %v\n%s", tag, err, out)
	}
	get("riv-software-inventory:software-inventory/component="+url.PathEscape(tag)+"/rim", &rims)
	if len(rims.RIMs) != 1 || rims.RIMs[0].MediaType != "application/swid+cose" {
		t.Fatalf("RIMs of %s: %+v", tag, rims.RIMs)
	}
	f := filepath.Join(t.TempDir(), "image.cose")
	os.WriteFile(f, rims.RIMs[0].Content, 0o600)
	if code, out, stderr := runBin(t, "rivctl", "rim", "verify", "--anchors", ep.RIMSigner, f); code != 0 {
		t.Fatalf("rivctl rim verify: exit %d %s %s", code, out, stderr)
	}
	if code, _, _ := runBin(t, "rivctl", "rim", "verify", "--anchors", ep.TrustAnchors, f); code != 1 {
		t.Errorf("rivctl rim verify against the manufacturer's CA: exit %d, want 1", code)
	}
	// No RIM directory: the verdict comes from the in-band RIMs.
	ep.RIMs = ""
	noRIMs := filepath.Join(t.TempDir(), "endpoints.json")
	if err := ep.Write(noRIMs); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runBin(t, "rivctl", "attest", "--json", "--transport", "tls", noRIMs)
	if code != 0 || !strings.Contains(out, `"status":"affirming"`) {
		t.Fatalf("attest with in-band RIMs only: exit %d %s %s", code, out, stderr)
	}
}

// TestRouterOwnerIdentity: with --local the owner enrols an LDevID and LAK
// after the manufacturer's keys; riv-agent serve then identifies with the
// LDevID (its TLS certificate is the owner CA's), lists the LAK beside the
// IAK, and the router is affirming over both transports against the
// owner's anchor.
func TestRouterOwnerIdentity(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-OWN", "--local")
	ep, err := verifier.ReadEndpoints(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ep.OwnerAnchors == "" {
		t.Fatal("no owner_anchors in endpoints.json")
	}
	for _, via := range []string{"tls", "ssh", "restconf", "snmp"} {
		code, out, stderr := runBin(t, "rivctl", "attest", "--json", "--transport", via, filepath.Join(dir, "endpoints.json"))
		if code != 0 || !strings.Contains(out, `"status":"affirming"`) {
			t.Errorf("over %s: exit %d %s %s", via, code, out, stderr)
		}
	}
	cert, err := tls.LoadX509KeyPair(ep.TLSClientCert, ep.TLSClientKey)
	if err != nil {
		t.Fatal(err)
	}
	// An LDevID names a device, not a host: the issuer is what is checked.
	conn, err := tls.Dial("tcp", ep.NetconfTLS, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if got := strings.Join(leaf.Issuer.Organization, ",") + "/" + leaf.Issuer.CommonName; !strings.Contains(got, "Owner") {
		t.Errorf("the TLS identity is issued by %q, want the owner's CA", got)
	}
}

// stateful returns an appraisal over NETCONF-TLS of the router in dir by
// one verifier that keeps its state between calls, as the collector's
// does: with localRIMs from the router's RIM directory, else from the
// RIMs the router carries.
func stateful(t *testing.T, dir string, localRIMs bool) func() *verifier.Result {
	t.Helper()
	v, target := routerVerifier(t, dir, localRIMs)
	return func() *verifier.Result { t.Helper(); return appraiseTarget(t, v, target) }
}

// appraiseTarget appraises target with v, failing t on an error.
func appraiseTarget(t *testing.T, v *verifier.Verifier, target verifier.Target) *verifier.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := v.AppraiseTarget(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// routerVerifier is stateful's verifier and the router's NETCONF-TLS
// target.
func routerVerifier(t *testing.T, dir string, localRIMs bool) (*verifier.Verifier, verifier.Target) {
	t.Helper()
	ep, err := verifier.ReadEndpoints(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := verifier.LoadPool(ep.TrustAnchors)
	if err != nil {
		t.Fatal(err)
	}
	rimPool, err := verifier.LoadPool(ep.RIMSigner)
	if err != nil {
		t.Fatal(err)
	}
	pol := verifier.Policy{Anchors: pool, RIMs: rim.NewIndex(), RIMAnchors: rimPool, Banks: []alg.ID{alg.SHA256, alg.SHA384}}
	if localRIMs {
		if pol.RIMs, _, err = verifier.LoadRIMs(ep.RIMs, rimPool); err != nil {
			t.Fatal(err)
		}
		pol.RIMAnchors = nil
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	target, err := verifier.TargetOf(ep, "tls")
	if err != nil {
		t.Fatal(err)
	}
	return verifier.New(pol, key), target
}
