package snmp_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/testbed/device"
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
