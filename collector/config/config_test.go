package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// materialize creates every file the example names, under dir, and
// returns the example with its paths moved there.
func materialize(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/riv-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(b), "/etc/riv/", dir+"/etc/"), "/var/lib/", dir+"/var/")
	os.MkdirAll(dir+"/etc", 0o700)
	os.MkdirAll(dir+"/var/riv/rims", 0o700)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	sshPEM, _ := ssh.MarshalPrivateKey(key, "")
	files := map[string][]byte{
		"collector.pem": certPEM, "collector-key.pem": keyPEM, "api-clients-ca.pem": certPEM, "manufacturer-ca.pem": certPEM,
		"vendor-rim-ca.pem": certPEM, "netconf-client.pem": certPEM, "netconf-client-key.pem": keyPEM,
		"netconf-ssh-key":          pem.EncodeToMemory(sshPEM),
		"collector-admin.token":    []byte(strings.Repeat("a", 40) + "\n"),
		"collector-readonly.token": []byte(strings.Repeat("r", 40) + "\n"),
		"webhook.secret":           []byte("a webhook secret of some length\n"),
		"snmp-riv.auth":            []byte("an-snmp-auth-password\n"),
		"snmp-riv.priv":            []byte("an-snmp-priv-password\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return text
}

func write(t *testing.T, dir, text string) string {
	t.Helper()
	f := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExampleLoads(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(write(t, dir, materialize(t, dir)))
	if err != nil {
		t.Fatalf("Load(deploy/riv-collector.yaml) = %v", err)
	}
	if len(c.Devices) != 3 || c.Devices[0].Policy != StrictPolicy || c.Devices[1].Policy != DefaultPolicy || c.Devices[1].Transport != "ssh" ||
		c.Devices[2].Transport != "snmp" || c.Devices[2].SNMPPrivKey.Value() != "an-snmp-priv-password" {
		t.Errorf("devices: %+v", c.Devices)
	}
	if c.Tokens.Admin.Value() != strings.Repeat("a", 40) || !strings.Contains(c.Devices[0].ClientKey.Value(), "BEGIN PRIVATE KEY") {
		t.Error("secrets not read")
	}
	// No way of printing the configuration shows a secret.
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "token", c.Tokens.Admin, "device", c.Devices[0].ClientKey)
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", c.Tokens), string(js), logged.String()} {
		if strings.Contains(out, strings.Repeat("a", 40)) || strings.Contains(out, "BEGIN PRIVATE KEY") {
			t.Errorf("a secret is shown: %s", out)
		}
	}
}

// A device reached over RESTCONF takes the TLS client certificate of
// NETCONF over TLS.
func TestRESTCONFDevice(t *testing.T) {
	dir := t.TempDir()
	example := materialize(t, dir)
	first := strings.Index(example, "name: pe1.fra")
	if first < 0 {
		t.Fatal("the example's first device is not pe1.fra")
	}
	text := example[:first] + strings.Replace(example[first:], "transport: tls", "transport: restconf", 1)
	c, err := Load(write(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	if c.Devices[0].Transport != "restconf" || c.Devices[0].ClientKey.Value() == "" {
		t.Errorf("device: %+v", c.Devices[0])
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	example := materialize(t, dir)
	// The unknown key goes on the line after "  inband: true".
	colour := strings.Count(example[:strings.Index(example, "  inband: true")], "\n") + 2
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown key", "  inband: true", "  inband: true\n  colour: red", fmt.Sprintf("collector.yaml:%d: rims.colour: unknown key", colour)},
		{"inline secret", "admin: {file: " + dir + "/etc/collector-admin.token}", "admin: hunter2hunter2hunter2hunter2hunter2", "tokens.admin: a secret is not written in the file"},
		{"postgres secret unset", "  # postgres: {file: " + dir + "/etc/postgres.url}", "  postgres: {env: RIV_TEST_NO_SUCH_VARIABLE}", "store.postgres"},
		{"lease ttl", "  # postgres: {file: " + dir + "/etc/postgres.url}", "  postgres: {file: " + dir + "/etc/collector-admin.token}\n  lease_ttl: 1s", "store.lease_ttl: 1s: want 3s to 10m"},
		{"bad interval", "interval: 5m ", "interval: 10ms ", "poll.interval: 10ms: want at least 1s"},
		{"bad type", "max_in_flight: 256", "max_in_flight: lots", "poll.max_in_flight"},
		{"keep_sessions", "keep_sessions: 5m", "keep_sessions: 0s", "poll.keep_sessions"},
		{"no policy set", "policy: strict", "policy: paranoid", `devices[0].policy: "paranoid": no such policy set`},
		{"bad bank", "banks: [sha256, sha384]   # quoted", "banks: [md5]   # quoted", `policies.default.banks[0]: "md5"`},
		{"transport", "transport: ssh", "transport: telnet", `devices[1].transport: "telnet": want tls, ssh, restconf or snmp`},
		{"restconf without a certificate", "transport: ssh", "transport: restconf", "devices[1]: transport restconf needs client_cert and client_key"},
		{"snmp without a user", "transport: ssh", "transport: snmp", "devices[1]: transport snmp needs snmp_user, snmp_auth_key and snmp_priv_key"},
		{"missing file", "manufacturer-ca.pem]", "nowhere.pem]", "trust.manufacturers[0]"},
		{"store sync", "sync: normal ", "sync: sometimes ", `store.sync: "sometimes": want normal or full`},
		{"durable within", "durable_within: 1s ", "durable_within: 1h ", "store.durable_within: 1h0m0s: want 10ms to 1m"},
		{"dup name", "name: p1.ams", "name: pe1.fra", `devices[1].name: "pe1.fra": a second device`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(example, tc.from) {
				t.Fatalf("the example has no %q", tc.from)
			}
			_, err := Load(write(t, dir, strings.Replace(example, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load() = %v, want %q", err, tc.want)
			}
		})
	}
	// A secret readable by others is refused.
	os.Chmod(filepath.Join(dir, "etc", "webhook.secret"), 0o644)
	if _, err := Load(write(t, dir, example)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Load(world-readable secret) = %v", err)
	}
}
