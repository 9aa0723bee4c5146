package snmp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/snmp"
	trapd "github.com/openriv/riv/internal/netsnmp"
	"github.com/openriv/riv/internal/syncbuf"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
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

// values parses net-snmp output printed with -Oqx (quick, hex): the
// value of each OID, continued over the lines that follow it.
func values(out string) map[string]string {
	m := map[string]string{}
	last := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, ".") {
			o, v, _ := strings.Cut(line, " ")
			m[o], last = strings.TrimSpace(v), o
		} else if last != "" && strings.TrimSpace(line) != "" {
			m[last] += " " + strings.TrimSpace(line)
		}
	}
	return m
}

// octets reads a hex value of -Oqx output.
func octets(t *testing.T, v string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(strings.Trim(v, `"`)), ""))
	if err != nil {
		t.Fatalf("not hex: %q", v)
	}
	return b
}

// TestChallengeNetSNMP: a manager creates a challenge row with snmpset
// (createAndGo, the nonce, defaults for bank and PCRs), waits for
// rivChallengeState ready, reads the quote's fragments and the IAK
// certificate's with snmpwalk, and the quote verifies against that key
// with the nonce it set. Then the errors RFC 3416 and RFC 2579 give for
// a wrong SET.
func TestChallengeNetSNMP(t *testing.T) {
	d := startDevice(t)
	auth, priv := string(d.SNMPUser.AuthPassword), string(d.SNMPUser.PrivPassword)
	col := func(c, idx uint32) string { return oidStr(mibdef.ChallengeEntry.Child(c, idx)) }
	nonce := make([]byte, 32)
	rand.Read(nonce)
	const idx = 4242
	out, err := netsnmp(t, "snmpset", append(v3(d, "authPriv", auth, priv),
		col(mibdef.ChallengeNonce, idx), "x", hex.EncodeToString(nonce), col(mibdef.ChallengeRowStatus, idx), "i", "4")...)
	if err != nil {
		t.Fatalf("snmpset: %v\n%s", err, out)
	}
	var state string
	for i := 0; i < 100; i++ {
		out, err = netsnmp(t, "snmpget", append(append(v3(d, "authPriv", auth, priv), "-Oqx"), col(mibdef.ChallengeState, idx), col(mibdef.ChallengeError, idx))...)
		if err != nil {
			t.Fatalf("snmpget: %v\n%s", err, out)
		}
		if state = values(out)[col(mibdef.ChallengeState, idx)]; state != "1" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if state != "2" {
		t.Fatalf("rivChallengeState = %s, want ready(2):\n%s", state, out)
	}
	walk := func(o mibdef.OID) map[string]string {
		t.Helper()
		out, err := netsnmp(t, "snmpbulkwalk", append(append(v3(d, "authPriv", auth, priv), "-Oqx"), oidStr(o))...)
		if err != nil {
			t.Fatalf("snmpbulkwalk %s: %v\n%s", oidStr(o), err, out)
		}
		return values(out)
	}
	join := func(vals map[string]string, prefix mibdef.OID) []byte {
		var b []byte
		for f := uint32(1); ; f++ {
			v, ok := vals[oidStr(prefix.Child(f))]
			if !ok {
				return b
			}
			b = append(b, octets(t, v)...)
		}
	}
	qv := walk(mibdef.QuoteData.Child(idx))
	attest, sig := join(qv, mibdef.QuoteData.Child(idx, mibdef.QuoteAttest)), join(qv, mibdef.QuoteData.Child(idx, mibdef.QuoteSignature))
	rows := walk(mibdef.ChallengeEntry)
	if got := rows[col(mibdef.ChallengeAttestLength, idx)]; got != strconv.Itoa(len(attest)) {
		t.Errorf("rivChallengeAttestLength %s, fragments hold %d", got, len(attest))
	}
	// The IAK's certificate, from its fragments.
	certs := walk(mibdef.RIVAttestationMIB.Child(1, 3))
	var der []byte
	for n := uint32(1); n < 10; n++ {
		if string(octets(t, certs[oidStr(mibdef.CertType.Child(n))])) == "initial-attestation-certificate" {
			der = join(walk(mibdef.CertFragmentData.Child(n)), mibdef.CertFragmentData.Child(n))
		}
	}
	iak, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("IAK certificate from its fragments: %v\n%v", err, certs)
	}
	if !iak.Equal(d.IAK) {
		t.Error("the certificate read is not the device's IAK")
	}
	res, err := quote.Verify(iak.PublicKey, attest, sig, quote.Options{Nonce: nonce})
	if err != nil {
		t.Fatalf("the quote read over SNMP does not verify: %v", err)
	}
	if got := res.Selection; len(got) != 1 || got[0].Bank != alg.SHA256 || len(got[0].PCRs) != 24 {
		t.Errorf("quoted selection %v, want sha256 PCRs 0-23", got)
	}

	set := func(args ...string) string {
		t.Helper()
		out, err := netsnmp(t, "snmpset", append(v3(d, "authPriv", auth, priv), args...)...)
		if err == nil {
			return ""
		}
		return out
	}
	n32 := hex.EncodeToString(nonce)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"short nonce", []string{col(mibdef.ChallengeNonce, 1), "x", "0102", col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "wrongLength"},
		{"createAndWait", []string{col(mibdef.ChallengeNonce, 1), "x", n32, col(mibdef.ChallengeRowStatus, 1), "i", "5"}, "wrongValue"},
		{"no nonce", []string{col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "inconsistentValue"},
		{"bank not allocated", []string{col(mibdef.ChallengeNonce, 1), "x", n32, col(mibdef.ChallengeBank, 1), "u", "18", col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "inconsistentValue"},
		{"no PCRs", []string{col(mibdef.ChallengeNonce, 1), "x", n32, col(mibdef.ChallengePcrSelect, 1), "x", "000000", col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "wrongValue"},
		{"not an attestation key", []string{col(mibdef.ChallengeNonce, 1), "x", n32, col(mibdef.ChallengeCertName, 1), "s", "nope", col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "inconsistentValue"},
		{"wrong type", []string{col(mibdef.ChallengeNonce, 1), "i", "5", col(mibdef.ChallengeRowStatus, 1), "i", "4"}, "wrongType"},
		{"column without a row", []string{col(mibdef.ChallengeNonce, 1), "x", n32}, "inconsistentName"},
		{"existing row", []string{col(mibdef.ChallengeNonce, idx), "x", n32, col(mibdef.ChallengeRowStatus, idx), "i", "4"}, "inconsistentValue"},
		{"read-only column", []string{col(mibdef.ChallengeState, idx), "i", "2"}, "notWritable"},
		{"no index", []string{oidStr(mibdef.ChallengeEntry.Child(mibdef.ChallengeNonce, 1, 2)), "x", n32}, "noCreation"},
	} {
		if out := set(tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%s: want %s, got:\n%s", tc.name, tc.want, out)
		}
	}
	// Nothing was created by the failed SETs; destroy removes the row.
	if out := set(col(mibdef.ChallengeRowStatus, idx), "i", "6"); out != "" {
		t.Fatalf("destroy: %s", out)
	}
	out, _ = netsnmp(t, "snmpwalk", append(v3(d, "authPriv", auth, priv), oidStr(mibdef.ChallengeEntry))...)
	if strings.Contains(out, oidStr(mibdef.ChallengeEntry)+".") {
		t.Errorf("rows left after destroy:\n%s", out)
	}
}

// TestChallengeRowsBounded: the table holds at most ChallengeMaxRows
// rows (resourceUnavailable beyond, RFC 3416 §4.2.5), and rows age out
// after ChallengeLifetime, which frees their places.
func TestChallengeRowsBounded(t *testing.T) {
	d := startDevice(t)
	s, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{d.SNMPUser}, Name: d.Serial, ChallengeMaxRows: 2, ChallengeLifetime: time.Second})
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
	t.Cleanup(func() { cancel(); <-done })
	args := []string{"-v3", "-l", "authPriv", "-u", d.SNMPUser.Name, "-a", "SHA-256", "-A", string(d.SNMPUser.AuthPassword), "-x", "AES", "-X", string(d.SNMPUser.PrivPassword),
		"udp:" + pc.LocalAddr().String()}
	create := func(idx uint32) (string, error) {
		nonce := make([]byte, 32)
		rand.Read(nonce)
		return netsnmp(t, "snmpset", append(args, oidStr(mibdef.ChallengeEntry.Child(mibdef.ChallengeNonce, idx)), "x", hex.EncodeToString(nonce),
			oidStr(mibdef.ChallengeEntry.Child(mibdef.ChallengeRowStatus, idx)), "i", "4")...)
	}
	for _, idx := range []uint32{1, 2} {
		if out, err := create(idx); err != nil {
			t.Fatalf("row %d: %v\n%s", idx, err, out)
		}
	}
	if out, err := create(3); err == nil || !strings.Contains(out, "resourceUnavailable") {
		t.Fatalf("a third row in a table of two: %v\n%s", err, out)
	}
	time.Sleep(1100 * time.Millisecond)
	out, err := netsnmp(t, "snmpwalk", append(args, oidStr(mibdef.ChallengeEntry))...)
	if err != nil || strings.Contains(out, oidStr(mibdef.ChallengeEntry)+".") {
		t.Fatalf("rows left after their lifetime: %v\n%s", err, out)
	}
	if out, err := create(3); err != nil {
		t.Fatalf("after the rows aged out: %v\n%s", err, out)
	}
	out, err = netsnmp(t, "snmpget", append(args, oidStr(mibdef.ChallengeMaxRows.Child(0)), oidStr(mibdef.ChallengeLifetime.Child(0)), oidStr(mibdef.FragmentSize.Child(0)))...)
	if err != nil || !strings.Contains(out, "Gauge32: 2\n") || !strings.Contains(out, "Gauge32: 1\n") || !strings.Contains(out, "Gauge32: 256") {
		t.Errorf("the table's bounds: %v\n%s", err, out)
	}
}

// TestEventTableNetSNMP: snmpbulkwalk reads every entry of every log
// with its digests and data (from the fragments) as the device holds
// them, and snmpbulkget from the last entry a manager holds returns the
// entries after it, which is how a manager follows a growing log.
func TestEventTableNetSNMP(t *testing.T) {
	d := startDevice(t)
	auth, priv := string(d.SNMPUser.AuthPassword), string(d.SNMPUser.PrivPassword)
	base := append(v3(d, "authPriv", auth, priv), "-Oqx")
	out, err := netsnmp(t, "snmpbulkwalk", append(base, oidStr(mibdef.RIVAttestationMIB.Child(1, 7)))...)
	if err != nil {
		t.Fatalf("snmpbulkwalk: %v\n%s", err, out)
	}
	rows := values(out)
	out, err = netsnmp(t, "snmpbulkwalk", append(base, oidStr(mibdef.RIVAttestationMIB.Child(1, 8)))...)
	if err != nil {
		t.Fatalf("snmpbulkwalk: %v\n%s", err, out)
	}
	data := values(out)
	total := 0
	for _, lt := range d.Attester.LogTypes() {
		code := map[attester.LogType]uint32{attester.LogBIOS: 1, attester.LogIMA: 2, attester.LogNetequip: 3}[lt]
		ent, err := d.Logs.Log(context.Background(), lt)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ent.Log.Events {
			key := func(c uint32) string { return oidStr(mibdef.EventEntry.Child(c, code, uint32(e.Seq))) }
			total++
			if got := rows[key(mibdef.EventPcr)]; got != strconv.Itoa(e.PCR) {
				t.Fatalf("%s entry %d: rivEventPcr %q, want %d", lt, e.Seq, got, e.PCR)
			}
			digests := octets(t, rows[key(mibdef.EventDigests)])
			if n := int(digests[3]); n != len(e.Digests) || !bytes.Contains(digests, e.Digests[0].Value) {
				t.Errorf("%s entry %d: digests %x, want %v", lt, e.Seq, digests, e.Digests)
			}
			var b []byte
			for f := uint32(1); ; f++ {
				v, ok := data[oidStr(mibdef.EventData.Child(code, uint32(e.Seq), f))]
				if !ok {
					break
				}
				b = append(b, octets(t, v)...)
			}
			if !bytes.Equal(b, e.Data) {
				t.Errorf("%s entry %d: data %x, want %x", lt, e.Seq, b, e.Data)
			}
		}
	}
	if n := strings.Count(strings.Join(slices.Collect(maps.Keys(rows)), "\n"), oidStr(mibdef.EventEntry.Child(mibdef.EventPcr))+"."); n != total || total < 20 {
		t.Errorf("%d rows walked, the logs hold %d", n, total)
	}

	// A manager holding the BIOS log up to entry 3 reads on from there.
	out, err = netsnmp(t, "snmpbulkget", append(base, "-Cn0", "-Cr3", oidStr(mibdef.EventEntry.Child(mibdef.EventPcr, 1, 3)))...)
	if err != nil {
		t.Fatalf("snmpbulkget: %v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if o, _, _ := strings.Cut(line, " "); strings.HasPrefix(o, ".") {
			got = append(got, o)
		}
	}
	want := []string{oidStr(mibdef.EventEntry.Child(mibdef.EventPcr, 1, 4)), oidStr(mibdef.EventEntry.Child(mibdef.EventPcr, 1, 5)), oidStr(mibdef.EventEntry.Child(mibdef.EventPcr, 1, 6))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries after 3 (-want +got):\n%s", diff)
	}
}

// TestNotificationsNetSNMP: the agent sends its notifications to
// net-snmp's snmptrapd as an SNMPv3 trap (authoritative itself) and as
// an inform (after discovering snmptrapd's engine, acknowledged), both
// authPriv: rivTpmReset when it first sees the TPM's reset count, then
// rivPcrExtended and rivLogGrown when a file is measured. A restart that
// finds the same reset count (recorded in StateFile) sends no reset.
func TestNotificationsNetSNMP(t *testing.T) {
	d := startDevice(t)
	user := d.SNMPUser
	state := filepath.Join(t.TempDir(), "notify-state")
	// The agent's warnings: an inform snmptrapd did not acknowledge, a
	// notification not sent.
	var warnings syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := func(td *trapd.Trapd) (*snmp.Server, func()) {
		s, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{user}, Name: d.Serial, StateFile: state, WatchEvery: 100 * time.Millisecond, Logger: logger,
			Targets: []snmp.Target{{Addr: td.Addr, User: user.Name}, {Addr: td.Addr, User: user.Name, Inform: true, Retries: 3}}})
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
		return s, func() { cancel(); <-done }
	}
	// The agent's engine ID, for the traps: the default is built from Name.
	td := trapd.StartTrapd(t, trapd.User{Name: user.Name, Auth: string(user.AuthPassword), Priv: string(user.PrivPassword), EngineID: snmp.DefaultEngineID(d.Serial)})
	_, stop := start(td)
	reset := oidStr(mibdef.TpmReset)
	count := func(l, s string) int { return strings.Count(l, s) }
	l := td.Wait(t, 10*time.Second, func(l string) bool { return count(l, "= OID: "+reset) >= 2 })
	st, err := d.Attester.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		oidStr(mibdef.TpmResetCount.Child(0)) + " = Gauge32: " + strconv.Itoa(int(st.Clock.ResetCount)),
		oidStr(mibdef.TpmName.Child(0)) + ` = STRING: "tpm0"`,
		oidStr(mibdef.SysUpTime) + " = Timeticks:",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("snmptrapd log lacks %q:\n%s", want, l)
		}
	}

	// A measured file: PCR 10 moves, the IMA log grows.
	if err := d.MeasureFile(context.Background(), "/usr/bin/new-tool", []byte("new tool")); err != nil {
		t.Fatal(err)
	}
	pcr10 := oidStr(mibdef.PcrValue.Child(uint32(alg.SHA256), 10))
	l = td.Wait(t, 10*time.Second, func(l string) bool {
		return count(l, "= OID: "+oidStr(mibdef.PcrExtended)) >= 2 && count(l, "= OID: "+oidStr(mibdef.LogGrown)) >= 2
	})
	if !strings.Contains(l, pcr10+" = Hex-STRING:") {
		t.Errorf("rivPcrExtended without sha256 PCR 10:\n%s", l)
	}
	if !strings.Contains(l, oidStr(mibdef.LogEntries)+".") {
		t.Errorf("rivLogGrown without the log's length:\n%s", l)
	}
	stop()

	// Restarted with the same TPM: no reset to tell.
	before := count(td.Log(), "= OID: "+reset)
	_, stop = start(td)
	time.Sleep(500 * time.Millisecond)
	stop()
	if n := count(td.Log(), "= OID: "+reset); n != before {
		t.Errorf("a restart without a TPM reset sent %d reset notifications", n-before)
	}
	if w := warnings.String(); w != "" {
		t.Errorf("the agent warned:\n%s", w)
	}
}

// TestAgentXUnderSnmpd: the agent as an AgentX subagent of net-snmp's
// snmpd. A GET of several objects of the MIB in one PDU gets every one
// (a Go AgentX library answered only the first), snmpbulkwalk reads the
// PCRs and log entries through the master, a challenge is created with
// snmpset through it and its quote verifies, and when snmpd restarts the
// subagent registers again.
func TestAgentXUnderSnmpd(t *testing.T) {
	d := startDevice(t)
	nms := snmp.User{Name: "nms", AuthPassword: "nms-auth-password", PrivPassword: "nms-priv-password"}
	// snmpd forwards the subagent's notifications as SNMPv3 traps to
	// snmptrapd, which knows snmpd's engine ID (set here).
	engine := []byte("\x80\x00\x1f\x88\x04riv-snmpd")
	td := trapd.StartTrapd(t, trapd.User{Name: nms.Name, Auth: string(nms.AuthPassword), Priv: string(nms.PrivPassword), EngineID: engine})
	sess := fmt.Sprintf("exactEngineID 0x%x\ntrapsess -v3 -l authPriv -u %s -a SHA-256 -A %s -x AES -X %s udp:%s", engine, nms.Name, nms.AuthPassword, nms.PrivPassword, td.Addr)
	sd := trapd.StartSnmpdWith(t, sess, trapd.User{Name: nms.Name, Auth: string(nms.AuthPassword), Priv: string(nms.PrivPassword)})
	s, err := snmp.New(snmp.Config{Attester: d.Attester, Users: []snmp.User{d.SNMPUser}, Name: d.Serial})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.AgentX(ctx, sd.AgentX) }()
	t.Cleanup(func() { cancel(); <-done })
	args := []string{"-v3", "-l", "authPriv", "-u", nms.Name, "-a", "SHA-256", "-A", string(nms.AuthPassword), "-x", "AES", "-X", string(nms.PrivPassword), "udp:" + sd.Addr}
	get := func() (string, error) {
		return netsnmp(t, "snmpget", append(args, oidStr(mibdef.TpmName.Child(0)), oidStr(mibdef.TpmResetCount.Child(0)), oidStr(mibdef.PcrValue.Child(uint32(alg.SHA256), 7)),
			oidStr(mibdef.FragmentSize.Child(0)))...)
	}
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if out, err = get(); err == nil && strings.Contains(out, `"tpm0"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subagent's objects through snmpd: %v\n%s\nsnmpd:\n%s", err, out, sd.Log())
		}
	}
	for _, want := range []string{oidStr(mibdef.TpmResetCount.Child(0)) + " = Gauge32:", oidStr(mibdef.PcrValue.Child(uint32(alg.SHA256), 7)) + " = Hex-STRING:",
		oidStr(mibdef.FragmentSize.Child(0)) + " = Gauge32: 256"} {
		if !strings.Contains(out, want) {
			t.Errorf("a GET of four varbinds lacks %q:\n%s", want, out)
		}
	}
	out, err = netsnmp(t, "snmpbulkwalk", append(args, oidStr(mibdef.RIVAttestationMIB))...)
	if err != nil {
		t.Fatalf("snmpbulkwalk through snmpd: %v\n%s", err, out)
	}
	if n, want := strings.Count(out, oidStr(mibdef.PcrValue)+"."), 24*len(d.Attester.Banks()); n != want {
		t.Errorf("%d PCR values through snmpd, want %d", n, want)
	}
	if !strings.Contains(out, oidStr(mibdef.EventEntry.Child(mibdef.EventDigests, 1, 0))+" = ") {
		t.Errorf("no BIOS log entry 0 through snmpd")
	}
	// A challenge: TestSet and CommitSet from the master.
	nonce := make([]byte, 32)
	rand.Read(nonce)
	col := func(c uint32) string { return oidStr(mibdef.ChallengeEntry.Child(c, 9)) }
	if out, err := netsnmp(t, "snmpset", append(args, col(mibdef.ChallengeNonce), "x", hex.EncodeToString(nonce), col(mibdef.ChallengeRowStatus), "i", "4")...); err != nil {
		t.Fatalf("snmpset through snmpd: %v\n%s", err, out)
	}
	if out, err := netsnmp(t, "snmpset", append(args, col(mibdef.ChallengeNonce), "x", "01", col(mibdef.ChallengeRowStatus), "i", "4")...); err == nil || !strings.Contains(out, "wrongLength") {
		t.Errorf("a short nonce through snmpd: %v\n%s", err, out)
	}
	var state string
	for i := 0; i < 100 && state != "2"; i++ {
		out, _ := netsnmp(t, "snmpget", append(append(args, "-Oqv"), col(mibdef.ChallengeState))...)
		if f := strings.Fields(out); len(f) > 0 {
			state = f[len(f)-1] // after net-snmp's "Created directory" notes
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err = netsnmp(t, "snmpwalk", append(append(args, "-Oqx"), oidStr(mibdef.QuoteData.Child(9)))...)
	if err != nil || state != "2" {
		t.Fatalf("the quote through snmpd: state %s, %v\n%s", state, err, out)
	}
	var attest, sig []byte
	for o, v := range values(out) {
		switch {
		case strings.HasPrefix(o, oidStr(mibdef.QuoteData.Child(9, 1))):
			attest = append(attest, octets(t, v)...) // one fragment each here
		case strings.HasPrefix(o, oidStr(mibdef.QuoteData.Child(9, 2))):
			sig = append(sig, octets(t, v)...)
		}
	}
	if _, err := quote.Verify(d.IAK.PublicKey, attest, sig, quote.Options{Nonce: nonce}); err != nil {
		t.Errorf("the quote read through snmpd: %v", err)
	}

	// The subagent's rivTpmReset of its start, through snmpd.
	td.Wait(t, 10*time.Second, func(l string) bool { return strings.Contains(l, "= OID: "+oidStr(mibdef.TpmReset)) })

	// snmpd restarts: the subagent comes back.
	sd.Stop()
	sd.Start(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if out, err = get(); err == nil && strings.Contains(out, `"tpm0"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after snmpd restarted: %v\n%s\nsnmpd:\n%s", err, out, sd.Log())
		}
	}
}
