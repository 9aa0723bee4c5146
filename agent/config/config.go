// Package config is the configuration of `riv-agent serve`: a YAML file
// decoded strictly (an unknown key is an error naming the key and its
// line), defaults that fit a Linux NOS, and Validate, which checks every
// value and every file the agent will need before it starts, so that
// `riv-agent config check` catches what serve would trip on.
//
// The keys tpm, logs.{bios,ima,netequip_boot} and
// listen.{netconf_ssh,netconf_tls,restconf,snmp} are a contract (DESIGN.md
// §4); the rest is documented in deploy/riv-agent.yaml and docs/agent.md.
package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/openriv/riv/internal/yamlconf"
)

// Kernel paths a Linux NOS exposes (securityfs).
const (
	KernelBIOS = "/sys/kernel/security/tpm0/binary_bios_measurements"
	KernelIMA  = "/sys/kernel/security/ima/binary_runtime_measurements"
)

// Config is the agent's configuration file.
type Config struct {
	// TPM is /dev/tpmrm0 (the kernel's resource manager: the agent shares
	// the TPM with IMA), swtpm:PATH or swtpm:HOST:PORT.
	TPM string `yaml:"tpm"`
	// Name is the TPM's name in ietf-tpm-remote-attestation (tpm-name).
	Name string `yaml:"name"`
	// Manufacturer is reported as the TPM's manufacturer.
	Manufacturer string `yaml:"manufacturer"`
	// HardwareBased marks the TPM as a hardware TPM (RFC 9684
	// hardware-based); default true for a device path, false for swtpm.
	HardwareBased *bool      `yaml:"hardware_based"`
	Logs          Logs       `yaml:"logs"`
	Identity      Identity   `yaml:"identity"`
	Listen        Listen     `yaml:"listen"`
	Device        Device     `yaml:"device"`
	NETCONF       NETCONF    `yaml:"netconf"`
	TLS           TLS        `yaml:"tls"`
	NACM          NACM       `yaml:"nacm"`
	SNMP          SNMP       `yaml:"snmp"`
	Inventory     string     `yaml:"inventory"`
	Limits        Limits     `yaml:"limits"`
	LineCards     []LineCard `yaml:"line_cards"`
}

// Logs are the measurement logs the kernel (and the NOS) writes. An empty
// path means the device keeps no such log.
type Logs struct {
	BIOS string `yaml:"bios"`
	// IMA is binary_runtime_measurements; the per-bank files the kernel
	// writes beside it (binary_runtime_measurements_sha256, ...) are read
	// too, for their template digests in those banks.
	IMA string `yaml:"ima"`
	// NetequipBoot is the NOS's own log of what it measured into PCR 10
	// (IMA binary format), for NOSes without IMA.
	NetequipBoot string `yaml:"netequip_boot"`
}

// Key is a TPM-resident key at a persistent handle and its certificate.
type Key struct {
	Cert   string `yaml:"cert"`
	Handle uint32 `yaml:"handle"`
}

// Identity names the device's keys: the manufacturer's IDevID (TLS and
// SSH identity) and IAK (quotes), and optionally the owner's LDevID and
// LAK (RFC 9683 §2.2). Chain lists the intermediates sent with the
// identity certificate.
type Identity struct {
	IDevID Key    `yaml:"idevid"`
	IAK    Key    `yaml:"iak"`
	LDevID *Key   `yaml:"ldevid"`
	LAK    *Key   `yaml:"lak"`
	Chain  string `yaml:"chain"`
	// Use is the transport identity: idevid (default) or ldevid.
	Use string `yaml:"use"`
}

// Listen addresses; "off" turns a server off.
type Listen struct {
	NetconfSSH string `yaml:"netconf_ssh"`
	NetconfTLS string `yaml:"netconf_tls"`
	RESTCONF   string `yaml:"restconf"`
	SNMP       string `yaml:"snmp"`
}

// Off is the listen address of a server that does not run.
const Off = "off"

// Device describes the router for SNMP's system group and the engine ID.
type Device struct {
	Name     string `yaml:"name"`
	Contact  string `yaml:"contact"`
	Location string `yaml:"location"`
}

// NETCONF configures the sessions.
type NETCONF struct {
	Users       []User        `yaml:"users"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// User is a NETCONF (SSH) user with the OpenSSH authorized_keys file of
// the keys it logs in with. Passwords are never accepted.
type User struct {
	Name           string `yaml:"name"`
	AuthorizedKeys string `yaml:"authorized_keys"`
}

// TLS configures NETCONF over TLS and RESTCONF clients (RFC 7589 §7,
// RFC 7407 cert-to-name).
type TLS struct {
	ClientCA   string       `yaml:"client_ca"`
	CertToName []CertToName `yaml:"cert_to_name"`
}

// CertToName maps a client certificate to a user name.
type CertToName struct {
	// Fingerprint is the SHA-256 of the leaf or of a CA in its chain
	// (hex, colons allowed); empty matches any certificate.
	Fingerprint string `yaml:"fingerprint"`
	// MapType: common-name, san-rfc822-name, san-dns-name or specified.
	MapType string `yaml:"map_type"`
	Name    string `yaml:"name"`
}

// NACM is RFC 8341 access control: the attestation RPCs are denied to
// anyone no rule permits.
type NACM struct {
	Groups      map[string][]string `yaml:"groups"`
	Rules       []Rule              `yaml:"rules"`
	ExecDefault string              `yaml:"exec_default"`
}

// Rule permits or denies an operation to a group.
type Rule struct {
	Group     string `yaml:"group"`
	Operation string `yaml:"operation"`
	Action    string `yaml:"action"`
}

// SNMP configures the SNMPv3 agent (authPriv only).
type SNMP struct {
	Users     []SNMPUser `yaml:"users"`
	BootsFile string     `yaml:"boots_file"`
	// Notify lists the receivers of the agent's notifications
	// (rivTpmReset, rivPcrExtended, rivLogGrown).
	Notify []NotifyTarget `yaml:"notify"`
	// NotifyStateFile keeps the TPM reset count last seen, so that a
	// reboot is notified when the agent starts again.
	NotifyStateFile string `yaml:"notify_state_file"`
	// WatchInterval is how often the TPM is read for notifications.
	WatchInterval time.Duration `yaml:"watch_interval"`
	// AgentX is the socket of an AgentX master (net-snmp snmpd): the
	// agent also serves the MIB as its subagent.
	AgentX string `yaml:"agentx"`
}

// NotifyTarget is a receiver of notifications, with SNMP-TARGET-MIB's
// semantics: an address, a user of snmp.users (authPriv), trap or inform,
// and for informs the wait for an acknowledgement and the retries.
type NotifyTarget struct {
	Address string        `yaml:"address"`
	User    string        `yaml:"user"`
	Type    string        `yaml:"type"`
	Timeout time.Duration `yaml:"timeout"`
	Retries *int          `yaml:"retries"`
}

// SNMPUser is a USM user whose passwords are read from files (never
// inline: the file's permissions protect them, and nothing logs them).
type SNMPUser struct {
	Name         string `yaml:"name"`
	AuthProtocol string `yaml:"auth_protocol"`
	AuthKeyFile  string `yaml:"auth_key_file"`
	PrivProtocol string `yaml:"priv_protocol"`
	PrivKeyFile  string `yaml:"priv_key_file"`
}

// Limits bound what clients can hold.
type Limits struct {
	QuotesPerSecond    float64       `yaml:"quotes_per_second"`
	MaxSessionsPerUser int           `yaml:"max_sessions_per_user"`
	MaxMessageSize     int           `yaml:"max_message_size"`
	DrainTimeout       time.Duration `yaml:"drain_timeout"`
}

// LineCard is a further TPM of the device (a line card or a second
// control card), with its own logs and attestation key: RFC 9684
// compute-nodes.
type LineCard struct {
	Name          string `yaml:"name"`
	TPM           string `yaml:"tpm"`
	Logs          Logs   `yaml:"logs"`
	IAK           Key    `yaml:"iak"`
	HardwareBased *bool  `yaml:"hardware_based"`
}

// Default returns the defaults a Linux NOS needs no line of config for.
func Default() *Config {
	return &Config{
		TPM:  "/dev/tpmrm0",
		Name: "tpm0",
		Logs: Logs{BIOS: KernelBIOS, IMA: KernelIMA},
		Identity: Identity{
			IDevID: Key{Cert: "/etc/riv/idevid.pem", Handle: 0x81020001},
			IAK:    Key{Cert: "/etc/riv/iak.pem", Handle: 0x81020000},
			Use:    "idevid",
		},
		Listen:  Listen{NetconfSSH: "[::]:830", NetconfTLS: "[::]:6513", RESTCONF: "[::]:443", SNMP: "[::]:161"},
		NETCONF: NETCONF{IdleTimeout: 10 * time.Minute},
		TLS:     TLS{CertToName: []CertToName{{MapType: "common-name"}}},
		SNMP:    SNMP{BootsFile: "/var/lib/riv/snmp-engine-boots", NotifyStateFile: "/var/lib/riv/snmp-notify-state", WatchInterval: 5 * time.Second},
		Limits:  Limits{QuotesPerSecond: 20, MaxSessionsPerUser: 32, MaxMessageSize: 1 << 20, DrainTimeout: 10 * time.Second},
	}
}

// reservedName is the name of the device's aggregate in an attestation
// result: no TPM may have it.
const reservedName = "device"

// Error is a problem with one key of the file.
type Error = yamlconf.Error

// Load reads, decodes and validates file.
func Load(file string) (*Config, error) {
	b, err := yamlconf.Read(file)
	if err != nil {
		return nil, err
	}
	c, lines, err := Parse(file, b)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, lines.Locate(file, err)
	}
	return c, nil
}

// Parse decodes b strictly over the defaults. It returns the line of each
// key set in the file (dotted paths), for messages about their values.
func Parse(file string, b []byte) (*Config, yamlconf.Lines, error) {
	c := Default()
	// Lists replace the defaults instead of merging into them.
	c.TLS.CertToName = nil
	lines, err := yamlconf.Decode(file, b, c)
	if err != nil {
		return nil, yamlconf.Lines{}, err
	}
	if c.TLS.CertToName == nil {
		c.TLS.CertToName = Default().TLS.CertToName
	}
	return c, lines, nil
}

// keyErr builds a validation error for key.
var keyErr = yamlconf.KeyErr

// Validate checks every value and that every file named is there and
// readable; it parses certificates and keys files only as far as needed
// to know they are what the key says (the agent loads them at start).
func (c *Config) Validate() error {
	if err := validTPM("tpm", c.TPM); err != nil {
		return err
	}
	if c.Name == "" || c.Name == reservedName {
		return keyErr("name", "%q: must not be empty or %q (the device's aggregate in a result)", c.Name, reservedName)
	}
	if err := c.Logs.validate("logs"); err != nil {
		return err
	}
	if err := validKey("identity.idevid", c.Identity.IDevID); err != nil {
		return err
	}
	if err := validKey("identity.iak", c.Identity.IAK); err != nil {
		return err
	}
	if c.Identity.LDevID != nil {
		if err := validKey("identity.ldevid", *c.Identity.LDevID); err != nil {
			return err
		}
	}
	if c.Identity.LAK != nil {
		if err := validKey("identity.lak", *c.Identity.LAK); err != nil {
			return err
		}
	}
	switch c.Identity.Use {
	case "idevid":
	case "ldevid":
		if c.Identity.LDevID == nil {
			return keyErr("identity.use", "ldevid needs identity.ldevid")
		}
	default:
		return keyErr("identity.use", "%q: want idevid or ldevid", c.Identity.Use)
	}
	if c.Identity.Chain != "" {
		if err := readable("identity.chain", c.Identity.Chain); err != nil {
			return err
		}
	}
	for _, l := range []struct{ key, addr string }{
		{"listen.netconf_ssh", c.Listen.NetconfSSH}, {"listen.netconf_tls", c.Listen.NetconfTLS},
		{"listen.restconf", c.Listen.RESTCONF}, {"listen.snmp", c.Listen.SNMP},
	} {
		if l.addr == Off {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return keyErr(l.key, "%q: want HOST:PORT or off", l.addr)
		}
	}
	if c.Listen.NetconfSSH == Off && c.Listen.NetconfTLS == Off && c.Listen.RESTCONF == Off && c.Listen.SNMP == Off {
		return keyErr("listen", "every server is off")
	}
	seen := map[string]bool{}
	for i, u := range c.NETCONF.Users {
		k := fmt.Sprintf("netconf.users[%d]", i)
		if !validName(u.Name) {
			return keyErr(k+".name", "%q: want 1-64 characters of letters, digits, . _ -", u.Name)
		}
		if seen[u.Name] {
			return keyErr(k+".name", "user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if err := readable(k+".authorized_keys", u.AuthorizedKeys); err != nil {
			return err
		}
	}
	if c.NETCONF.IdleTimeout < 0 {
		return keyErr("netconf.idle_timeout", "must not be negative")
	}
	needTLS := c.Listen.NetconfTLS != Off || c.Listen.RESTCONF != Off
	if needTLS && c.TLS.ClientCA == "" {
		return keyErr("tls.client_ca", "required while listen.netconf_tls or listen.restconf is on (clients must present certificates)")
	}
	if c.TLS.ClientCA != "" {
		if err := readable("tls.client_ca", c.TLS.ClientCA); err != nil {
			return err
		}
	}
	for i, m := range c.TLS.CertToName {
		k := fmt.Sprintf("tls.cert_to_name[%d]", i)
		switch m.MapType {
		case "common-name", "san-rfc822-name", "san-dns-name":
		case "specified":
			if m.Name == "" {
				return keyErr(k+".name", "required with map_type specified")
			}
		default:
			return keyErr(k+".map_type", "%q: want common-name, san-rfc822-name, san-dns-name or specified", m.MapType)
		}
		if m.Fingerprint != "" {
			if _, err := Fingerprint(m.Fingerprint); err != nil {
				return keyErr(k+".fingerprint", "%v", err)
			}
		}
	}
	for g, users := range c.NACM.Groups {
		if !validName(g) {
			return keyErr("nacm.groups."+g, "group name %q: want 1-64 characters of letters, digits, . _ -", g)
		}
		for _, u := range users {
			if !validName(u) {
				return keyErr("nacm.groups."+g, "user name %q: want 1-64 characters of letters, digits, . _ -", u)
			}
		}
	}
	for i, r := range c.NACM.Rules {
		k := fmt.Sprintf("nacm.rules[%d]", i)
		if _, ok := c.NACM.Groups[r.Group]; !ok && r.Group != "*" {
			return keyErr(k+".group", "group %q is not in nacm.groups", r.Group)
		}
		if r.Operation == "" {
			return keyErr(k+".operation", "required (an RPC name or *)")
		}
		if r.Action != "permit" && r.Action != "deny" {
			return keyErr(k+".action", "%q: want permit or deny", r.Action)
		}
	}
	if e := c.NACM.ExecDefault; e != "" && e != "permit" && e != "deny" {
		return keyErr("nacm.exec_default", "%q: want permit or deny", e)
	}
	if c.Listen.SNMP != Off && len(c.SNMP.Users) == 0 {
		return keyErr("snmp.users", "at least one user is required while listen.snmp is on (authPriv only; or set listen.snmp: off)")
	}
	users := map[string]bool{}
	for _, u := range c.SNMP.Users {
		users[u.Name] = true
	}
	for i, n := range c.SNMP.Notify {
		k := fmt.Sprintf("snmp.notify[%d]", i)
		if _, _, err := net.SplitHostPort(n.Address); err != nil {
			return keyErr(k+".address", "%q: want HOST:PORT (UDP; receivers listen on 162)", n.Address)
		}
		if !users[n.User] {
			return keyErr(k+".user", "%q is not one of snmp.users", n.User)
		}
		if n.Type != "trap" && n.Type != "inform" {
			return keyErr(k+".type", "%q: want trap or inform", n.Type)
		}
		if n.Timeout < 0 || n.Timeout > time.Minute {
			return keyErr(k+".timeout", "%v: want up to 1m", n.Timeout)
		}
		if n.Retries != nil && (*n.Retries < 0 || *n.Retries > 10) {
			return keyErr(k+".retries", "%d: want 0-10", *n.Retries)
		}
		if n.Type == "trap" && (n.Timeout != 0 || n.Retries != nil) {
			return keyErr(k+".type", "a trap is sent once: timeout and retries are for informs")
		}
	}
	if a := c.SNMP.AgentX; a != "" {
		if hp, ok := strings.CutPrefix(a, "tcp:"); ok {
			if _, _, err := net.SplitHostPort(hp); err != nil {
				return keyErr("snmp.agentx", "%q: want tcp:HOST:PORT or the master's Unix socket path", a)
			}
		} else if !filepath.IsAbs(a) {
			return keyErr("snmp.agentx", "%q: want tcp:HOST:PORT or the master's Unix socket path (net-snmp: /var/agentx/master)", a)
		}
	}
	if len(c.SNMP.Notify) > 0 && c.Listen.SNMP == Off && c.SNMP.AgentX == "" {
		return keyErr("snmp.notify", "notifications come from the SNMP engine: listen.snmp or snmp.agentx must be on")
	}
	if c.SNMP.WatchInterval < time.Second {
		return keyErr("snmp.watch_interval", "%v: want 1s or more", c.SNMP.WatchInterval)
	}
	seen = map[string]bool{}
	for i, u := range c.SNMP.Users {
		k := fmt.Sprintf("snmp.users[%d]", i)
		if u.Name == "" || len(u.Name) > 32 {
			return keyErr(k+".name", "%q: want 1-32 characters", u.Name)
		}
		if seen[u.Name] {
			return keyErr(k+".name", "user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if u.AuthProtocol != "SHA-256" {
			return keyErr(k+".auth_protocol", "%q: want SHA-256 (usmHMAC192SHA256AuthProtocol, RFC 7860)", u.AuthProtocol)
		}
		if u.PrivProtocol != "AES" {
			return keyErr(k+".priv_protocol", "%q: want AES (RFC 3826)", u.PrivProtocol)
		}
		for _, f := range []struct{ key, path string }{{k + ".auth_key_file", u.AuthKeyFile}, {k + ".priv_key_file", u.PrivKeyFile}} {
			p, err := ReadSecret(f.path)
			if err != nil {
				return keyErr(f.key, "%v", err)
			}
			if len(p) < 8 {
				return keyErr(f.key, "%s: the password must have at least 8 characters (RFC 3414 §11.2)", f.path)
			}
		}
	}
	if c.Inventory != "" {
		st, err := os.Stat(c.Inventory)
		if err != nil {
			return keyErr("inventory", "%v", err)
		}
		if !st.IsDir() {
			return keyErr("inventory", "%s is not a directory", c.Inventory)
		}
	}
	if c.Limits.QuotesPerSecond < 0 || c.Limits.MaxSessionsPerUser < 0 || c.Limits.MaxMessageSize < 0 || c.Limits.DrainTimeout < 0 {
		return keyErr("limits", "must not be negative")
	}
	names, tpms := map[string]bool{c.Name: true}, map[string]bool{}
	for i, lc := range c.LineCards {
		k := fmt.Sprintf("line_cards[%d]", i)
		if !validName(lc.Name) {
			return keyErr(k+".name", "%q: want 1-64 characters of letters, digits, . _ -", lc.Name)
		}
		if names[lc.Name] {
			return keyErr(k+".name", "%q is the name of another TPM", lc.Name)
		}
		if lc.Name == reservedName || lc.Name == "control" {
			return keyErr(k+".name", "%q is reserved (the device's aggregate, the main TPM's compute node)", lc.Name)
		}
		names[lc.Name] = true
		if err := validTPM(k+".tpm", lc.TPM); err != nil {
			return err
		}
		if err := lc.Logs.validate(k + ".logs"); err != nil {
			return err
		}
		if err := validKey(k+".iak", lc.IAK); err != nil {
			return err
		}
		if lc.TPM == c.TPM || tpms[lc.TPM] {
			return keyErr(k+".tpm", "%q is the TPM of another card: each card has its own", lc.TPM)
		}
		tpms[lc.TPM] = true
	}
	return nil
}

func (l Logs) validate(key string) error {
	if l.BIOS == "" && l.IMA == "" && l.NetequipBoot == "" {
		return keyErr(key, "no log configured (bios, ima or netequip_boot)")
	}
	if l.IMA != "" && l.NetequipBoot != "" {
		// Both would claim PCR 10's run-time measurements.
		return keyErr(key, "ima and netequip_boot both measure into PCR 10: configure one")
	}
	for _, f := range []struct{ key, path string }{{key + ".bios", l.BIOS}, {key + ".ima", l.IMA}, {key + ".netequip_boot", l.NetequipBoot}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.key, f.path); err != nil {
			return err
		}
	}
	// The kernel's per-bank files beside the IMA log are read too.
	if l.IMA != "" {
		for _, suffix := range []string{"_sha1", "_sha256", "_sha384", "_sha512", "_sm3"} {
			if _, err := os.Stat(l.IMA + suffix); err == nil {
				if err := readable(key+".ima", l.IMA+suffix); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func validTPM(key, spec string) error {
	switch {
	case spec == "":
		return keyErr(key, "required: /dev/tpmrm0, swtpm:PATH or swtpm:HOST:PORT")
	case strings.HasPrefix(spec, "swtpm:"):
		rest := strings.TrimPrefix(spec, "swtpm:")
		if strings.HasPrefix(rest, "/") {
			return nil
		}
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return keyErr(key, "%q: want swtpm:PATH (absolute) or swtpm:HOST:PORT", spec)
		}
		return nil
	case spec == "sim" || spec == "simulator":
		return keyErr(key, "the in-process simulator is for riv-agent dev; serve needs a TPM the kernel or swtpm provides")
	case !strings.HasPrefix(spec, "/"):
		return keyErr(key, "%q: want an absolute device path, swtpm:PATH or swtpm:HOST:PORT", spec)
	}
	if _, err := os.Stat(spec); err != nil {
		return keyErr(key, "%v", err)
	}
	return nil
}

func validKey(key string, k Key) error {
	if k.Handle>>24 != 0x81 {
		return keyErr(key+".handle", "0x%08x is not a persistent handle (0x81xxxxxx)", k.Handle)
	}
	return readable(key+".cert", k.Cert)
}

var readable = yamlconf.Readable

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// ReadSecret reads a password file: its first line, without the line end.
var ReadSecret = yamlconf.ReadSecret

// Fingerprint decodes a SHA-256 fingerprint in hex (colons allowed).
func Fingerprint(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.ToLower(s), ":", "")
	if len(h) != 64 {
		return nil, fmt.Errorf("%q: want the 32-byte SHA-256 in hex", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%q: not hex", s)
	}
	return b, nil
}
