package snmp_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/snmp"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
)

func startDevice(t *testing.T) *device.Device { return device.StartT(t, device.Options{}) }

// netsnmp runs a net-snmp command with no configuration or MIB files of
// the machine's, numeric OIDs, one try.
func netsnmp(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	bin := testref.NeedTool(t, tool)
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"-m", "", "-M", dir, "-On", "-r", "0", "-t", "3"}, args...)...)
	cmd.Env = append(os.Environ(), "SNMPCONFPATH="+dir, "SNMP_PERSISTENT_DIR="+dir, "MIBS=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func v3(d *device.Device, level, authPass, privPass string) []string {
	return []string{"-v3", "-l", level, "-u", d.SNMPUser.Name, "-a", "SHA-256", "-A", authPass, "-x", "AES", "-X", privPass, "udp:" + d.SNMPAddr}
}

func oidStr(o mibdef.OID) string {
	s := ""
	for _, n := range o {
		s += fmt.Sprintf(".%d", n)
	}
	return s
}

func TestNetSNMPReadsTheMIB(t *testing.T) {
	d := startDevice(t)
	auth, priv := string(d.SNMPUser.AuthPassword), string(d.SNMPUser.PrivPassword)
	out, err := netsnmp(t, "snmpget", append(v3(d, "authPriv", auth, priv), oidStr(mibdef.TpmName.Child(0)), oidStr(mibdef.TpmResetCount.Child(0)))...)
	if err != nil || !strings.Contains(out, `STRING: "tpm0"`) || !strings.Contains(out, oidStr(mibdef.TpmResetCount.Child(0))+" = Gauge32:") {
		t.Fatalf("snmpget: %v\n%s", err, out)
	}

	// A walk returns every PCR of every bank, equal to the TPM's.
	for _, tool := range []string{"snmpwalk", "snmpbulkwalk"} {
		out, err = netsnmp(t, tool, append(v3(d, "authPriv", auth, priv), oidStr(mibdef.RIVAttestationMIB))...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, out)
		}
		if n, want := strings.Count(out, oidStr(mibdef.PcrValue)+"."), 24*len(d.Attester.Banks()); n != want {
			t.Errorf("%s: %d PCR values, want %d\n%s", tool, n, want, out)
		}
		vals, err := d.TPM.ReadPCRs(context.Background(), []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{4}}})
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(regexp.QuoteMeta(oidStr(mibdef.PcrValue.Child(uint32(alg.SHA256), 4))) + ` = Hex-STRING: ([0-9A-F \n]+)`)
		m := re.FindStringSubmatch(out)
		if m == nil || strings.Join(strings.Fields(m[1]), "") != strings.ToUpper(hex.EncodeToString(vals.Get(alg.SHA256, 4))) {
			t.Errorf("%s: sha256 PCR 4 = %v, TPM has %x", tool, m, vals.Get(alg.SHA256, 4))
		}
		for _, want := range []string{oidStr(mibdef.CertData.Child(1)), oidStr(mibdef.LogEntries.Child(1)), oidStr(mibdef.LogEntries.Child(3))} {
			if !strings.Contains(out, want+" = ") {
				t.Errorf("%s: no %s", tool, want)
			}
		}
	}
	// The engine's own objects, as net-snmp's discovery saw them.
	out, err = netsnmp(t, "snmpget", append(v3(d, "authPriv", auth, priv), oidStr(mibdef.SnmpEngineBoots), oidStr(mibdef.UsmStatsUnknownEngineIDs))...)
	if err != nil || !strings.Contains(out, "INTEGER: 1") || !strings.Contains(out, "Counter32:") {
		t.Errorf("engine objects: %v\n%s", err, out)
	}
}

// TestSecurity: authPriv only; wrong keys, unknown users, lower levels,
// v2c and writes all fail the way net-snmp reports them.
func TestSecurity(t *testing.T) {
	d := startDevice(t)
	auth, priv := string(d.SNMPUser.AuthPassword), string(d.SNMPUser.PrivPassword)
	name := oidStr(mibdef.TpmName.Child(0))
	cases := []struct {
		name string
		tool string
		args []string
		want string
	}{
		{"wrong auth password", "snmpget", append(v3(d, "authPriv", "not-the-password", priv), name), "Authentication failure"},
		{"wrong priv password", "snmpget", append(v3(d, "authPriv", auth, "not-the-password"), name), ""},
		{"authNoPriv", "snmpget", append(v3(d, "authNoPriv", auth, priv), name), "Unsupported security level"},
		{"noAuthNoPriv", "snmpget", []string{"-v3", "-l", "noAuthNoPriv", "-u", d.SNMPUser.Name, "udp:" + d.SNMPAddr, name}, "Unsupported security level"},
		{"unknown user", "snmpget", []string{"-v3", "-l", "authPriv", "-u", "mallory", "-a", "SHA-256", "-A", auth, "-x", "AES", "-X", priv, "udp:" + d.SNMPAddr, name}, "Unknown user name"},
		{"v2c", "snmpget", []string{"-v2c", "-c", "public", "udp:" + d.SNMPAddr, name}, "Timeout"},
		{"set", "snmpset", append(v3(d, "authPriv", auth, priv), name, "s", "x"), "notWritable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := netsnmp(t, tc.tool, tc.args...)
			if err == nil {
				t.Fatalf("%s succeeded:\n%s", tc.name, out)
			}
			if strings.Contains(out, "tpm0") {
				t.Errorf("data leaked:\n%s", out)
			}
			if tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("%s: want %q in:\n%s", tc.name, tc.want, out)
			}
		})
	}
}

// TestMIBText: the MIB module passes smilint at level 6 without a
// message (smilint exits 0 even on errors, so its output is checked).
func TestMIBText(t *testing.T) {
	bin := testref.NeedTool(t, "smilint")
	mib, err := filepath.Abs("../../mibs/RIV-ATTESTATION-MIB.txt")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-l", "6", mib)
	cmd.Env = append(os.Environ(), "SMIPATH="+testref.Path(t, "mib/base"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("smilint: %v\n%s", err, out)
	}
}

// TestSystemGroup: NMS discovery reads the SNMPv2-MIB system group (RFC
// 3418 §2); sysUpTime runs, and the snmp group counts what arrives
// (snmpInBadVersions after a v2c request, RFC 3412 §7.2 step 2).
func TestSystemGroup(t *testing.T) {
	d := startDevice(t)
	auth, priv := string(d.SNMPUser.AuthPassword), string(d.SNMPUser.PrivPassword)
	get := func(oids ...mibdef.OID) string {
		t.Helper()
		var args []string
		for _, o := range oids {
			args = append(args, oidStr(o))
		}
		out, err := netsnmp(t, "snmpget", append(v3(d, "authPriv", auth, priv), args...)...)
		if err != nil {
			t.Fatalf("snmpget: %v\n%s", err, out)
		}
		return out
	}
	out := get(mibdef.SysDescr, mibdef.SysObjectID, mibdef.SysUpTime, mibdef.SysName, mibdef.SysServices)
	for _, want := range []string{
		oidStr(mibdef.SysDescr) + ` = STRING: "RIV agent`,
		oidStr(mibdef.SysObjectID) + " = OID: " + oidStr(mibdef.RIVAgent) + "\n",
		oidStr(mibdef.SysName) + ` = STRING: "` + d.Serial + `"`,
		oidStr(mibdef.SysServices) + " = INTEGER: 68",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	ticks := func(out string) int {
		m := regexp.MustCompile(regexp.QuoteMeta(oidStr(mibdef.SysUpTime)) + ` = Timeticks: \((\d+)\)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no sysUpTime in:\n%s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	first := ticks(out)
	time.Sleep(300 * time.Millisecond)
	if second := ticks(get(mibdef.SysUpTime)); second < first+30 {
		t.Errorf("sysUpTime went from %d to %d in 0.3 s", first, second)
	}

	// A walk of the system group: every scalar and the sysORTable entry
	// for RIV-ATTESTATION-MIB.
	out, err := netsnmp(t, "snmpwalk", append(v3(d, "authPriv", auth, priv), ".1.3.6.1.2.1.1")...)
	if err != nil {
		t.Fatalf("snmpwalk: %v\n%s", err, out)
	}
	for _, o := range []mibdef.OID{mibdef.SysContact, mibdef.SysLocation, mibdef.SysORLastChange, mibdef.SysORID.Child(1), mibdef.SysORDescr.Child(1)} {
		if !strings.Contains(out, oidStr(o)+" = ") {
			t.Errorf("walk lacks %s:\n%s", oidStr(o), out)
		}
	}
	if !strings.Contains(out, oidStr(mibdef.SysORID.Child(1))+" = OID: "+oidStr(mibdef.RIVCompliance)) {
		t.Errorf("sysORID.1 is not rivCompliance:\n%s", out)
	}

	if out, err := netsnmp(t, "snmpget", "-v2c", "-c", "public", "udp:"+d.SNMPAddr, oidStr(mibdef.SysDescr)); err == nil {
		t.Fatalf("v2c answered:\n%s", out)
	}
	out = get(mibdef.SnmpInBadVersions, mibdef.SnmpInPkts, mibdef.SnmpEnableAuthenTraps)
	if !strings.Contains(out, oidStr(mibdef.SnmpInBadVersions)+" = Counter32: 1\n") || !strings.Contains(out, oidStr(mibdef.SnmpEnableAuthenTraps)+" = INTEGER: 2") {
		t.Errorf("snmp group after one v2c request:\n%s", out)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(oidStr(mibdef.SnmpInPkts)) + ` = Counter32: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no snmpInPkts:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 5 {
		t.Errorf("snmpInPkts = %d after at least 5 messages", n)
	}
}

// TestEngineBootsPersisted: snmpEngineBoots grows on every start of the
// engine and survives it (RFC 3414 §2.2), as net-snmp sees it when it
// discovers the engine.
func TestEngineBootsPersisted(t *testing.T) {
	d := startDevice(t)
	file := filepath.Join(t.TempDir(), "snmp-engine-boots")
	for want := 1; want <= 3; want++ {
		s, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{d.SNMPUser}, Name: d.Serial, BootsFile: file})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, pc) }()
		args := []string{"-v3", "-l", "authPriv", "-u", d.SNMPUser.Name, "-a", "SHA-256", "-A", string(d.SNMPUser.AuthPassword), "-x", "AES", "-X", string(d.SNMPUser.PrivPassword),
			"udp:" + pc.LocalAddr().String(), oidStr(mibdef.SnmpEngineBoots)}
		out, err := netsnmp(t, "snmpget", args...)
		cancel()
		<-done
		if err != nil || !strings.Contains(out, fmt.Sprintf("INTEGER: %d\n", want)) {
			t.Fatalf("start %d: snmpEngineBoots: %v\n%s", want, err, out)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "3\n" {
		t.Errorf("boots file holds %q (%v), want 3", b, err)
	}
	// A corrupt count is an error, never a silent reset to 1 (which
	// would reopen old time windows).
	os.WriteFile(file, []byte("many\n"), 0o600)
	if _, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{d.SNMPUser}, BootsFile: file}); err == nil {
		t.Error("a corrupt boots file was accepted")
	}
}
