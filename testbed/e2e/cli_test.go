package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/endpoint"
)

// The CLIs as a new user meets them (issue 11 F): the real binaries,
// built once per run, against real riv-agent dev processes.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// bin returns the path of a RIV binary (rivctl, riv-agent, riv-demo,
// riv-router) or
// veraison's arc, built from this tree (arc from tools/go.mod).
func bin(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		root := testref.Root(t)
		if binDir, binErr = os.MkdirTemp("", "riv-bin-"); binErr != nil {
			return
		}
		for _, b := range [][3]string{
			{".", "rivctl", "./collector/cmd/rivctl"},
			{".", "riv-agent", "./agent/cmd/riv-agent"},
			{".", "riv-demo", "./testbed/cmd/riv-demo"},
			{".", "riv-router", "./testbed/cmd/riv-router"},
			{".", "riv-collector", "./collector/cmd/riv-collector"},
			{".", "riv-fleetsim", "./testbed/cmd/riv-fleetsim"},
			{"tools", "arc", "github.com/veraison/ear/arc"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[1]), b[2])
			cmd.Dir = filepath.Join(root, b[0])
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", b[2], err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// runBin runs a binary and returns its exit code, stdout and stderr.
func runBin(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin(t, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("%s %v: %v", name, args, err)
	return 0, "", ""
}

// startDev runs `riv-agent dev` in its own directory until the test ends
// and returns the path of its endpoints.json.
func startDev(t *testing.T, serial string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin(t, "riv-agent"), append([]string{"dev", "--dir", dir, "--serial", serial}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	ep := filepath.Join(dir, "endpoints.json")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ep); err == nil {
			return ep
		}
		if time.Now().After(deadline) {
			t.Fatalf("riv-agent dev %s: no endpoints.json after 60 s\n%s", serial, errb.String())
		}
	}
}

// earKeys writes an EAR signing key (PKCS#8 PEM) and its public key as
// PEM and as the JWK arc reads.
func earKeys(t *testing.T) (priv, pubPEM, pubJWK string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	raw, _ := k.PublicKey.Bytes() // 0x04 || X || Y
	jwk := fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, base64.RawURLEncoding.EncodeToString(raw[1:33]), base64.RawURLEncoding.EncodeToString(raw[33:]))
	priv, pubPEM, pubJWK = filepath.Join(dir, "ear.key"), filepath.Join(dir, "ear.pub"), filepath.Join(dir, "ear.jwk")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(pubPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600)
	os.WriteFile(pubJWK, []byte(jwk), 0o600)
	return
}

// TestCLIAttest: several targets, one line (or JSON object) per device,
// the worst exit status; EARs signed with --ear-key that rivctl ear verify
// and veraison's arc verify accept (F.3, F.4, F.5).
func TestCLIAttest(t *testing.T) {
	clean := startDev(t, "RTR-0001")
	kernel := startDev(t, "RTR-0002", "--attack", "tampered-kernel")
	priv, pubPEM, pubJWK := earKeys(t)

	// --json: one object per device, in the order given, with the keys
	// of the contract.
	code, out, errs := runBin(t, "rivctl", "attest", "--json", "--ear-key", priv, clean, "--endpoints", kernel)
	if code != 1 {
		t.Fatalf("attest clean+kernel: exit %d, want 1 (the worst)\n%s\n%s", code, out, errs)
	}
	if strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "RTR-0002: contraindicated") {
		t.Errorf("stderr is not one line naming the worst device: %q", errs)
	}
	var objs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		objs = append(objs, m)
	}
	if len(objs) != 2 {
		t.Fatalf("%d JSON objects, want 2:\n%s", len(objs), out)
	}
	for i, want := range []struct{ serial, status string }{{"RTR-0001", "affirming"}, {"RTR-0002", "contraindicated"}} {
		o := objs[i]
		for _, k := range []string{"device", "serial", "status", "reasons", "trust_vector", "ear"} {
			if _, ok := o[k]; !ok {
				t.Errorf("object %d has no %q: %v", i, k, o)
			}
		}
		if o["serial"] != want.serial || o["status"] != want.status {
			t.Errorf("object %d: serial %v status %v, want %s %s", i, o["serial"], o["status"], want.serial, want.status)
		}
		tv, _ := o["trust_vector"].(map[string]any)
		if _, ok := tv["instance-identity"]; !ok {
			t.Errorf("object %d: trust_vector %v has no AR4SI instance-identity", i, o["trust_vector"])
		}
	}
	if r, _ := objs[1]["reasons"].([]any); len(r) == 0 {
		t.Errorf("contraindicated device without reasons: %v", objs[1])
	}

	dir := t.TempDir()
	ears := map[string]string{}
	for i, name := range []string{"clean", "kernel"} {
		ears[name] = filepath.Join(dir, name+".jwt")
		os.WriteFile(ears[name], []byte(objs[i]["ear"].(string)), 0o600)
	}
	// rivctl ear verify: 0 only for a verified, affirming EAR.
	if code, out, errs := runBin(t, "rivctl", "ear", "verify", "--key", pubPEM, ears["clean"]); code != 0 || !strings.Contains(out, "AFFIRMING") {
		t.Errorf("ear verify clean: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runBin(t, "rivctl", "ear", "verify", "--key", pubJWK, ears["kernel"]); code != 1 || !strings.Contains(errs, "contraindicated") {
		t.Errorf("ear verify kernel: %d %s", code, errs)
	}
	_, otherPub, _ := earKeys(t)
	if code, _, errs := runBin(t, "rivctl", "ear", "verify", "--key", otherPub, ears["clean"]); code != 1 {
		t.Errorf("ear verify with another key: %d %s", code, errs)
	}
	tok, _ := os.ReadFile(ears["clean"])
	parts := strings.Split(string(tok), ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	altered := bytes.Replace(claims, []byte(`"instance-identity":2`), []byte(`"instance-identity":3`), 1)
	if bytes.Equal(altered, claims) {
		t.Fatalf("no instance-identity claim to alter in %s", claims)
	}
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(altered) + "." + parts[2]
	os.WriteFile(filepath.Join(dir, "forged.jwt"), []byte(forged), 0o600)
	if code, _, errs := runBin(t, "rivctl", "ear", "verify", "--key", pubPEM, filepath.Join(dir, "forged.jwt")); code != 1 {
		t.Errorf("ear verify of altered claims: %d %s", code, errs)
	}
	if code, out, _ := runBin(t, "rivctl", "ear", "show", ears["kernel"]); code != 0 || !strings.Contains(out, "contraindicated") {
		t.Errorf("ear show: %d\n%s", code, out)
	}
	if code, out, _ := runBin(t, "rivctl", "ear", "show", "--json", ears["clean"]); code != 0 || !strings.Contains(out, `"ear.verifier-id"`) {
		t.Errorf("ear show --json: %d\n%s", code, out)
	}

	// veraison's arc verifies RIV's EARs with the same public key.
	for name, path := range ears {
		code, out, errs := runBin(t, "arc", "verify", "--alg", "ES256", "--pkey", pubJWK, path)
		if code != 0 || !strings.Contains(out, `"ear.status"`) {
			t.Errorf("arc verify %s: %d\n%s%s", name, code, out, errs)
		}
	}
	if code, _, _ := runBin(t, "arc", "verify", "--alg", "ES256", "--pkey", pubJWK, filepath.Join(dir, "forged.jwt")); code == 0 {
		t.Error("arc verified the altered EAR")
	}

	// Text: one line per device; a single affirming device exits 0;
	// over TLS too.
	code, out, _ = runBin(t, "rivctl", "attest", clean, kernel)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "RTR-0001 (serial RTR-0001): AFFIRMING") || !strings.Contains(lines[1], "CONTRAINDICATED") {
		t.Errorf("attest text: %d\n%s", code, out)
	}
	if code, out, errs := runBin(t, "rivctl", "attest", "--transport", "tls", "--verbose", clean); code != 0 || !strings.Contains(out, "AFFIRMING") || !strings.Contains(out, "  ") {
		t.Errorf("attest clean over TLS: %d\n%s%s", code, out, errs)
	}
	// Over RESTCONF: the same verdicts and exit codes.
	code, out, errs = runBin(t, "rivctl", "attest", "--transport", "restconf", clean, kernel)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "RTR-0001 (serial RTR-0001): AFFIRMING") || !strings.Contains(lines[1], "CONTRAINDICATED") {
		t.Errorf("attest over RESTCONF: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runBin(t, "rivctl", "attest", "--transport", "restconf", "--netconf-tls", "127.0.0.1:1", clean); code != 2 || !strings.Contains(errs, "not both") {
		t.Errorf("attest with files and an address: %d %s", code, errs)
	}
	// Over SNMPv3 (RIV-ATTESTATION-MIB): the same again.
	code, out, errs = runBin(t, "rivctl", "attest", "--transport", "snmp", clean, kernel)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "RTR-0001 (serial RTR-0001): AFFIRMING") || !strings.Contains(lines[1], "CONTRAINDICATED") {
		t.Errorf("attest over SNMP: %d\n%s%s", code, out, errs)
	}
}

// TestCLIUnreachable: a device that accepts TCP and says nothing is
// reported by stage within the stage timeout, with exit 3, also when
// another device is fine (F.6, F.3).
func TestCLIUnreachable(t *testing.T) {
	clean := startDev(t, "RTR-0001")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	ep, err := endpoint.Read(clean)
	if err != nil {
		t.Fatal(err)
	}
	ep.NetconfSSH, ep.NetconfTLS, ep.Serial = ln.Addr().String(), ln.Addr().String(), "RTR-SILENT"
	silent := filepath.Join(t.TempDir(), "endpoints.json")
	if err := ep.Write(silent); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	code, out, errs := runBin(t, "rivctl", "attest", "--stage-timeout", "2s", silent)
	if code != 3 || !strings.Contains(errs, "no SSH handshake within 2 s") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("silent device over SSH: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("took %v with a 2 s stage timeout", el)
	}
	code, out, errs = runBin(t, "rivctl", "attest", "--stage-timeout", "2s", "--transport", "tls", "--json", clean, silent)
	if code != 3 || !strings.Contains(out, `"status":"unreachable"`) || !strings.Contains(out, "no TLS handshake within 2 s") || !strings.Contains(out, `"status":"affirming"`) {
		t.Errorf("clean + silent over TLS: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	// Progress is for terminals: none on a pipe.
	if strings.Contains(errs, "\r") || strings.Contains(errs, "handshake\n") {
		t.Errorf("progress written to a pipe: %q", errs)
	}
	// On a terminal (script(1) gives it one), the stages show as progress.
	tty := exec.Command("script", "-qec", bin(t, "rivctl")+" attest --stage-timeout 1s "+silent, "/dev/null")
	ttyOut, _ := tty.CombinedOutput()
	if !strings.Contains(string(ttyOut), "\x1b[K[0/1] RTR-SILENT: SSH handshake") || !strings.Contains(string(ttyOut), "no SSH handshake within 1 s") {
		t.Errorf("no progress on a terminal: %q", ttyOut)
	}
	ln.Close()
	if code, _, errs := runBin(t, "rivctl", "attest", silent); code != 3 || !strings.Contains(errs, "TCP connection to") {
		t.Errorf("refused: exit %d %s", code, errs)
	}
}

// TestCLIConventions: every binary has version, --help on it and on
// each subcommand prints usage to stdout and exits 0, and an unknown
// command or flag exits 2 with one line (F.2, F.3).
func TestCLIConventions(t *testing.T) {
	for _, c := range []struct {
		bin  string
		cmds [][]string
	}{
		{"rivctl", [][]string{{"attest"}, {"eventlog", "replay"}, {"eventlog", "show"}, {"quote", "verify"}, {"rim", "sign", "coswid"}, {"rim", "sign", "corim"}, {"rim", "verify"}, {"rim", "show"}, {"ear", "verify"}, {"ear", "show"},
			{"devices"}, {"device", "show"}, {"history"}, {"rim", "upload"}}},
		{"riv-agent", [][]string{{"provision"}, {"serve"}, {"config", "check"}, {"dev"}}},
		{"riv-demo", [][]string{{}}},
		{"riv-router", [][]string{{}, {"measure"}, {"reboot"}}},
		{"riv-collector", [][]string{{"dev"}, {"serve"}, {"config", "check"}}},
		{"riv-fleetsim", [][]string{{}}},
	} {
		if code, out, _ := runBin(t, c.bin, "version"); code != 0 || !strings.HasPrefix(out, c.bin+" ") {
			t.Errorf("%s version: %d %q", c.bin, code, out)
		}
		for _, sub := range c.cmds {
			args := append(append([]string{}, sub...), "--help")
			code, out, errs := runBin(t, c.bin, args...)
			if code != 0 || errs != "" || !strings.Contains(out, "Usage: "+strings.Join(append([]string{c.bin}, sub...), " ")) || !strings.Contains(out, "3  the device could not be reached") {
				t.Errorf("%s %v: %d\nstdout: %s\nstderr: %s", c.bin, args, code, out, errs)
			}
		}
		code, _, errs := runBin(t, c.bin, "--no-such-flag")
		if code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%s --no-such-flag: %d %q", c.bin, code, errs)
		}
	}
	if code, _, errs := runBin(t, "riv-agent", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("riv-agent frobnicate: %d %q", code, errs)
	}
}

// TestDemoAgentsDieWithIt: killing riv-demo (SIGKILL: no clean-up of its
// own) stops its routers, and theirs their agents and swtpms (F.9).
func TestDemoAgentsDieWithIt(t *testing.T) {
	cmd := exec.Command(bin(t, "riv-demo"), "--agent", bin(t, "riv-agent"), "--router", bin(t, "riv-router"), "--collector", bin(t, "riv-collector"),
		"--reference", testref.Dir(t), "--interval", "1h")
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Four routers, each with its swtpm and riv-agent serve, and the
	// collector.
	var agents []int
	for deadline := time.Now().Add(60 * time.Second); len(agents) < 13; time.Sleep(100 * time.Millisecond) {
		agents = nil
		for _, r := range childrenOf(cmd.Process.Pid) {
			agents = append(append(agents, r), childrenOf(r)...)
		}
		if time.Now().After(deadline) {
			t.Fatalf("riv-demo has %d routers, agents and swtpms after 60 s\n%s", len(agents), out.String())
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		alive := 0
		for _, p := range agents {
			if running(p) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range agents {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("%d of riv-demo's agents outlived it by 15 s", alive)
		}
	}
}

// childrenOf lists the pids whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st := procStat(p); len(st) > 1 && st[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// procStat returns a process's state and parent pid from
// /proc/PID/stat (after the parenthesised command name).
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// running: the process exists and is not a zombie.
func running(pid int) bool {
	st := procStat(pid)
	return len(st) > 0 && st[0] != "Z" && st[0] != "X"
}
