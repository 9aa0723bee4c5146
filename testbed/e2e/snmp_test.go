package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/snmp"
	snmpc "github.com/openriv/riv/collector/client/snmp"
	trapd "github.com/openriv/riv/internal/netsnmp"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/endpoint"
	"github.com/openriv/riv/pkg/mibdef"
)

// TestCLIQuoteOverSNMP is the operator's path from an NMS: net-snmp's
// snmpset creates a challenge on a `riv-agent dev` router, snmpget waits
// for it, snmpwalk reads the quote's fragments and the IAK certificate's,
// and `rivctl quote verify` accepts the quote with that nonce (exit 0)
// and refuses it with another (exit 1).
func TestCLIQuoteOverSNMP(t *testing.T) {
	ep, err := endpoint.Read(startDev(t, "RTR-SNMP"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	snmp := func(tool string, args ...string) string {
		t.Helper()
		cmd := exec.Command(testref.NeedTool(t, tool), append([]string{"-v3", "-l", "authPriv", "-u", ep.SNMPUser, "-a", ep.SNMPAuthProtocol, "-A", ep.SNMPAuthKey,
			"-x", ep.SNMPPrivProtocol, "-X", ep.SNMPPrivKey, "-m", "", "-M", tmp, "-On", "-Oqx", "-r", "0", "-t", "3", "udp:" + ep.SNMP}, args...)...)
		cmd.Env = append(os.Environ(), "SNMPCONFPATH="+tmp, "SNMP_PERSISTENT_DIR="+tmp, "MIBS=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
		}
		return string(out)
	}
	// hexOf joins the hex values of -Oqx output, in OID order.
	hexOf := func(out string) []byte {
		var b []byte
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, ".") {
				_, line, _ = strings.Cut(line, " ")
			}
			h, err := hex.DecodeString(strings.Join(strings.Fields(strings.Trim(line, `"`)), ""))
			if err != nil {
				t.Fatalf("not hex: %q", line)
			}
			b = append(b, h...)
		}
		return b
	}
	const m = ".1.3.6.1.3.9684.1"
	nonce := make([]byte, 32)
	rand.Read(nonce)
	snmp("snmpset", m+".5.1.2.77", "x", hex.EncodeToString(nonce), m+".5.1.10.77", "i", "4")
	for i := 0; ; i++ {
		f := strings.Fields(snmp("snmpget", "-Ov", m+".5.1.6.77")) // -Oqx above: just the value
		if state := f[len(f)-1]; state == "2" {
			break
		} else if state != "1" || i > 100 {
			t.Fatalf("rivChallengeState %v", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	attest := write("attest.bin", hexOf(snmp("snmpwalk", m+".6.1.3.77.1")))
	sig := write("sig.bin", hexOf(snmp("snmpwalk", m+".6.1.3.77.2")))
	// The IAK is the certificate whose rivCertType says so.
	var iak string
	for _, n := range []string{"1", "2", "3"} {
		if v := snmp("snmpget", "-Ov", m+".3.1.3."+n); !strings.Contains(v, "No Such") && string(hexOf(v)) == "initial-attestation-certificate" {
			iak = write("iak.der", hexOf(snmp("snmpwalk", m+".9.1.2."+n)))
		}
	}
	if iak == "" {
		t.Fatal("no IAK in rivCertTable")
	}
	code, out, errOut := runBin(t, "rivctl", "quote", "verify", "--ak", iak, "--quote", attest, "--sig", sig, "--nonce", hex.EncodeToString(nonce))
	if code != 0 {
		t.Fatalf("rivctl quote verify: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("rivctl quote verify:\n%s", out)
	other := make([]byte, 32)
	rand.Read(other)
	if code, out, errOut := runBin(t, "rivctl", "quote", "verify", "--ak", iak, "--quote", attest, "--sig", sig, "--nonce", hex.EncodeToString(other)); code != 1 {
		t.Errorf("with another nonce: exit %d, want 1\n%s%s", code, out, errOut)
	}
}

// TestRouterRebootTrap: `riv-router reboot` resets the TPM and restarts
// riv-agent serve, which finds a resetCount other than the one it
// recorded and tells snmptrapd: an SNMPv3 trap and an inform, authPriv,
// rivTpmReset with the new counts.
func TestRouterRebootTrap(t *testing.T) {
	// snmptrapd needs the router's SNMP passwords, which the router
	// makes: it gets a port now and starts once they exist.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	const serial = "RTR-TRAP"
	dir := startRouter(t, "--serial", serial, "--notify", "trap:"+addr, "--notify", "inform:"+addr)
	ep, err := endpoint.Read(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	td := trapd.StartTrapdAt(t, addr, trapd.User{Name: ep.SNMPUser, Auth: ep.SNMPAuthKey, Priv: ep.SNMPPrivKey, EngineID: snmp.DefaultEngineID(serial)})
	tmp := t.TempDir()
	cmd := exec.Command(testref.NeedTool(t, "snmpget"), "-v3", "-l", "authPriv", "-u", ep.SNMPUser, "-a", "SHA-256", "-A", ep.SNMPAuthKey, "-x", "AES", "-X", ep.SNMPPrivKey,
		"-m", "", "-M", tmp, "-On", "-Oqv", "udp:"+ep.SNMP, oidString(mibdef.TpmResetCount.Child(0)))
	cmd.Env = append(os.Environ(), "SNMPCONFPATH="+tmp, "SNMP_PERSISTENT_DIR="+tmp, "MIBS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("snmpget rivTpmResetCount: %v %s", err, out)
	}
	before, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("rivTpmResetCount %q", out)
	}
	if code, out, stderr := runBin(t, "riv-router", "reboot", "--dir", dir); code != 0 {
		t.Fatalf("reboot: exit %d %s %s", code, out, stderr)
	}
	// One trap and one inform from the agent that came back, with the
	// reset count the reboot made.
	after := oidString(mibdef.TpmResetCount.Child(0)) + " = Gauge32: " + strconv.Itoa(before+1) + "\t"
	l := td.Wait(t, 30*time.Second, func(l string) bool { return strings.Count(l, after) >= 2 })
	if !strings.Contains(l, "= OID: "+oidString(mibdef.TpmReset)) {
		t.Errorf("no rivTpmReset:\n%s", l)
	}
	t.Logf("snmptrapd:\n%s", l)
}

func oidString(o mibdef.OID) string {
	var b strings.Builder
	for _, n := range o {
		fmt.Fprintf(&b, ".%d", n)
	}
	return b.String()
}

// TestTrapsReceived: the collector's trap receiver takes an agent's
// SNMPv3 traps once it knows the agent's engine (from a session), names
// the device, and drops traps from an engine it has not polled.
func TestTrapsReceived(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	got := make(chan snmpc.Notification, 16)
	tr, err := snmpc.ListenTraps(addr, func(n snmpc.Notification) { got <- n })
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tg := targets(d)["snmp"]
	c, err := (snmpc.Dialer{}).Dial(context.Background(), tg.SNMP, tg.SNMPUser)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := tr.Add("rtr-1", c.EngineID(), tg.SNMPUser); err != nil {
		t.Fatal(err)
	}
	// Agents that send to the receiver: a reset at their first start.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := func(name string) {
		s, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{d.SNMPUser}, Name: name, WatchEvery: 100 * time.Millisecond,
			Targets: []snmp.Target{{Addr: addr, User: d.SNMPUser.Name}}})
		if err != nil {
			t.Fatal(err)
		}
		spc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(ctx, spc)
	}
	// The same user and passwords on an engine never polled: dropped.
	agent("NEVER-POLLED")
	select {
	case n := <-got:
		t.Fatalf("a trap from an engine not polled was taken: %+v", n)
	case <-time.After(time.Second):
	}
	agent(d.Serial)
	select {
	case n := <-got:
		if n.Device != "rtr-1" || !slices.Equal(n.OID, mibdef.TpmReset) {
			t.Errorf("notification %+v, want rivTpmReset from rtr-1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no trap received")
	}
}

// TestCollectorTrapReattests: riv-collector serve with poll.snmp_traps
// polls a router over SNMP once an hour; the router reboots, its agent
// sends rivTpmReset as a trap to the collector, and the collector
// attests it again at once: a second poll, with the reboot, within
// seconds. (With the traps sent elsewhere, no second poll comes.)
func TestCollectorTrapReattests(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	traps := pc.LocalAddr().String()
	pc.Close()
	r := startRouter(t, "--serial", "RTR-TRAPPED", "--notify", "trap:"+traps)
	dir := t.TempDir()
	p := newPKI(t, dir)
	cfg := serveConfig(t, dir, p, []string{r}, "{name: RTR-TRAPPED, endpoints: "+filepath.Join(r, "endpoints.json")+", transport: snmp}")
	b, _ := os.ReadFile(cfg)
	// The MIB carries no software inventory: the RIMs come from the
	// vendor's directory.
	b = []byte(strings.Replace(string(b), "poll: {interval: 2s, timeout: 10s}", "poll: {interval: 1h, timeout: 10s, snmp_traps: \""+traps+"\"}\nrims: {dirs: ["+filepath.Join(r, "rims")+"]}", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := startServe(t, dir, cfg, p)
	if d := c.devices(t, 1)["RTR-TRAPPED"]; d.Status != "affirming" || d.Polls != 1 {
		t.Fatalf("first poll: %+v", d)
	}
	if code, out, stderr := runBin(t, "riv-router", "reboot", "--dir", r); code != 0 {
		t.Fatalf("reboot: exit %d %s %s", code, out, stderr)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, b := c.call(t, "GET", "/api/v1/devices/RTR-TRAPPED/history?limit=10", c.ReadonlyToken)
		var h struct {
			History []struct {
				Status   string `json:"status"`
				Rebooted bool   `json:"rebooted"`
			}
		}
		if code != 200 || json.Unmarshal(b, &h) != nil {
			t.Fatalf("history: %d %s", code, b)
		}
		if len(h.History) >= 2 {
			if !h.History[0].Rebooted || h.History[0].Status != "affirming" {
				t.Errorf("the poll after the trap: %+v", h.History[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no poll within 30 s of the reboot (interval 1h): %s", b)
		}
	}
}
