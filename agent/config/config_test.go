package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// files writes a minimal set of the files a config names and returns a
// valid config text using them.
func files(t *testing.T) (dir, text string) {
	t.Helper()
	dir = t.TempDir()
	for _, n := range []string{"bios", "ima", "idevid.pem", "iak.pem", "client-ca.pem", "riv.keys"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"auth", "priv"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("password-"+n+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(`tpm: swtpm:D/tpm.sock
logs:
  bios: D/bios
  ima: D/ima
identity:
  idevid: {cert: D/idevid.pem, handle: 0x81020001}
  iak: {cert: D/iak.pem, handle: 0x81020000}
listen: {netconf_ssh: "127.0.0.1:830", netconf_tls: "127.0.0.1:6513", restconf: "127.0.0.1:443", snmp: "127.0.0.1:161"}
netconf:
  users:
    - name: riv
      authorized_keys: D/riv.keys
tls:
  client_ca: D/client-ca.pem
nacm:
  groups: {verifiers: [riv]}
  rules:
    - {group: verifiers, operation: "*", action: permit}
snmp:
  users:
    - {name: riv, auth_protocol: SHA-256, auth_key_file: D/auth, priv_protocol: AES, priv_key_file: D/priv}
  boots_file: D/boots
`, "D", dir)
	return dir, text
}

func load(t *testing.T, dir, text string) (*Config, error) {
	t.Helper()
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

func TestLoadValid(t *testing.T) {
	dir, text := files(t)
	c, err := load(t, dir, text)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.TPM = "swtpm:" + dir + "/tpm.sock"
	want.Logs = Logs{BIOS: dir + "/bios", IMA: dir + "/ima"}
	want.Identity.IDevID.Cert, want.Identity.IAK.Cert = dir+"/idevid.pem", dir+"/iak.pem"
	want.Listen = Listen{NetconfSSH: "127.0.0.1:830", NetconfTLS: "127.0.0.1:6513", RESTCONF: "127.0.0.1:443", SNMP: "127.0.0.1:161"}
	want.NETCONF.Users = []User{{Name: "riv", AuthorizedKeys: dir + "/riv.keys"}}
	want.TLS.ClientCA = dir + "/client-ca.pem"
	want.NACM = NACM{Groups: map[string][]string{"verifiers": {"riv"}}, Rules: []Rule{{Group: "verifiers", Operation: "*", Action: "permit"}}}
	want.SNMP = SNMP{Users: []SNMPUser{{Name: "riv", AuthProtocol: "SHA-256", AuthKeyFile: dir + "/auth", PrivProtocol: "AES", PrivKeyFile: dir + "/priv"}}, BootsFile: dir + "/boots",
		NotifyStateFile: "/var/lib/riv/snmp-notify-state", WatchInterval: 5 * time.Second}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	if c.NETCONF.IdleTimeout != 10*time.Minute || c.Limits.DrainTimeout != 10*time.Second {
		t.Errorf("defaults not applied: %+v %+v", c.NETCONF, c.Limits)
	}
	if p, err := ReadSecret(dir + "/auth"); err != nil || p != "password-auth" {
		t.Errorf("ReadSecret = %q, %v", p, err)
	}
}

// TestLoadErrors asserts the message of each broken config: the file, the
// line where the file has one, the key and what is wrong.
func TestLoadErrors(t *testing.T) {
	dir, text := files(t)
	f := filepath.Join(dir, "agent.yaml")
	edit := func(old, new string) string {
		if !strings.Contains(text, old) {
			t.Fatalf("%q not in the base config", old)
		}
		return strings.Replace(text, old, new, 1)
	}
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown top-level key", text + "colour: blue\n", f + ":23: colour: unknown key"},
		{"unknown nested key", edit("  ima: "+dir+"/ima\n", "  ima: "+dir+"/ima\n  uefi: /x\n"), f + ":5: logs.uefi: unknown key"},
		{"unknown key in a list item", edit("      authorized_keys:", "      password: hunter2\n      authorized_keys:"), f + ":12: netconf.users[0].password: unknown key"},
		{"missing log file", edit(dir+"/bios", dir+"/nonexistent"), f + ":3: logs.bios: " + dir + "/nonexistent: no such file or directory"},
		{"relative TPM path", edit("swtpm:"+dir+"/tpm.sock", "dev/tpmrm0"), f + ":1: tpm: \"dev/tpmrm0\": want an absolute device path, swtpm:PATH or swtpm:HOST:PORT"},
		{"simulator refused", edit("swtpm:"+dir+"/tpm.sock", "sim"), f + ":1: tpm: the in-process simulator is for riv-agent dev; serve needs a TPM the kernel or swtpm provides"},
		{"missing certificate", edit(dir+"/iak.pem", dir+"/missing-iak.pem"), f + ":7: identity.iak.cert: " + dir + "/missing-iak.pem: no such file or directory"},
		{"transient handle", edit("handle: 0x81020000", "handle: 0x80000001"), f + ":7: identity.iak.handle: 0x80000001 is not a persistent handle (0x81xxxxxx)"},
		{"bad listen address", edit(`netconf_ssh: "127.0.0.1:830"`, `netconf_ssh: "830"`), f + ":8: listen.netconf_ssh: \"830\": want HOST:PORT or off"},
		{"rule for an unknown group", edit("{group: verifiers, operation", "{group: admins, operation"), f + ":18: nacm.rules[0].group: group \"admins\" is not in nacm.groups"},
		{"SHA-1 SNMP auth", edit("auth_protocol: SHA-256", "auth_protocol: SHA"), f + ":21: snmp.users[0].auth_protocol: \"SHA\": want SHA-256 (usmHMAC192SHA256AuthProtocol, RFC 7860)"},
		{"missing SNMP key file", edit(dir+"/priv", dir+"/nopriv"), f + ":21: snmp.users[0].priv_key_file: open " + dir + "/nopriv: no such file or directory"},
		{"wrong type", edit("boots_file: "+dir+"/boots", "boots_file: [a, b]"), f + ":22: snmp.boots_file: cannot unmarshal !!seq into string"},
		{"not YAML", "tpm: [\n", f + ": line 1: did not find expected node content"},
		{"notify type", edit("  boots_file:", "  notify: [{address: \"127.0.0.1:162\", user: riv, type: informs}]\n  boots_file:"), f + ":22: snmp.notify[0].type: \"informs\": want trap or inform"},
		{"notify user", edit("  boots_file:", "  notify: [{address: \"127.0.0.1:162\", user: nms, type: trap}]\n  boots_file:"), f + ":22: snmp.notify[0].user: \"nms\" is not one of snmp.users"},
		{"notify address", edit("  boots_file:", "  notify: [{address: \"nms1\", user: riv, type: trap}]\n  boots_file:"), f + ":22: snmp.notify[0].address: \"nms1\": want HOST:PORT (UDP; receivers listen on 162)"},
		{"trap retries", edit("  boots_file:", "  notify: [{address: \"127.0.0.1:162\", user: riv, type: trap, retries: 2}]\n  boots_file:"), f + ":22: snmp.notify[0].type: a trap is sent once: timeout and retries are for informs"},
		{"a line card on the main TPM", text + "line_cards:\n  - name: lc1\n    tpm: swtpm:" + dir + "/tpm.sock\n    logs: {bios: " + dir + "/bios}\n    iak: {cert: " + dir + "/iak.pem, handle: 0x81020000}\n",
			f + ":25: line_cards[0].tpm: \"swtpm:" + dir + "/tpm.sock\" is the TPM of another card: each card has its own"},
		{"both runtime logs", edit("  ima: "+dir+"/ima\n", "  ima: "+dir+"/ima\n  netequip_boot: "+dir+"/ima\n"), f + ":2: logs: ima and netequip_boot both measure into PCR 10: configure one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, dir, tc.text)
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, s := range []string{want, strings.ToUpper(want), strings.TrimSuffix(strings.Repeat("AB:", 32), ":")} {
		if b, err := Fingerprint(s); err != nil || len(b) != 32 || b[0] != 0xab {
			t.Errorf("Fingerprint(%q) = %x, %v", s, b, err)
		}
	}
	for _, s := range []string{"", "ab", strings.Repeat("zz", 32)} {
		if _, err := Fingerprint(s); err == nil {
			t.Errorf("Fingerprint(%q) accepted", s)
		}
	}
}
