// Package config is the configuration of `riv-collector serve`: a YAML
// file decoded strictly (an unknown key is an error naming the key and its
// line), defaults for a management station, and Validate, which checks
// every value and loads every file serve will need, so that
// `riv-collector config check` catches what serve would trip on.
// Credentials are Secrets: read from a file or the environment, never
// printed, logged or marshalled.
//
// deploy/riv-collector.yaml documents every key.
package config

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/yamlconf"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/endpoint"
)

// Config is the collector's configuration file.
type Config struct {
	files *files // while Validate runs
	// Listen is the API's address (HTTPS).
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// DataDir holds the store (riv.db) and, by default, the EAR key.
	DataDir string `yaml:"data_dir"`
	// EARKey is the EAR signing key (PKCS#8 PEM, ECDSA P-256 or P-384),
	// created on the first start when absent and kept after: relying
	// parties trust it.
	EARKey    string               `yaml:"ear_key"`
	Tokens    Tokens               `yaml:"tokens"`
	Poll      Poll                 `yaml:"poll"`
	Retention Retention            `yaml:"retention"`
	Store     Store                `yaml:"store"`
	Trust     Trust                `yaml:"trust"`
	RIMs      RIMs                 `yaml:"rims"`
	Policies  map[string]PolicySet `yaml:"policies"`
	Webhooks  []Webhook            `yaml:"webhooks"`
	Devices   []Device             `yaml:"devices"`
}

// TLS is the API's server certificate, and with ClientCA the client
// certificates accepted instead of a token (mTLS).
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, admits a client whose certificate chains to it:
	// with the role of its Organizational Unit ("admin", else read-only).
	ClientCA string `yaml:"client_ca"`
}

// Tokens are the API's bearer tokens (at least 32 characters each).
type Tokens struct {
	Admin    Secret `yaml:"admin"`
	Readonly Secret `yaml:"readonly"`
}

// Poll sets the scheduler.
type Poll struct {
	Interval    time.Duration `yaml:"interval"`
	MaxInFlight int           `yaml:"max_in_flight"`
	Timeout     time.Duration `yaml:"timeout"`
	// KeepSessions: a device polled at least this often keeps its
	// session open between polls (10 KB, up to 48 KB once replies came
	// in full-size TLS records: crypto/tls keeps a record buffer; no
	// handshake); one polled less often reconnects each time — resuming
	// TLS from the shared session cache (1–2 ms more CPU a poll), or a
	// full SSH handshake (3–4 ms) — rather than hold a session longer
	// than a NETCONF server's idle timeout (10 minutes in riv-agent) may
	// allow (BenchmarkKeptSession).
	KeepSessions time.Duration `yaml:"keep_sessions"`
	// SNMPTraps is where (HOST:PORT, UDP) the devices polled over SNMP
	// send their SNMPv3 traps; each one from a device polls it at once.
	// Empty: no trap receiver.
	SNMPTraps string `yaml:"snmp_traps"`
}

// Retention bounds the history: results older than MaxAge go, except each
// device's newest Keep.
type Retention struct {
	MaxAge time.Duration `yaml:"max_age"`
	Keep   int           `yaml:"keep"`
}

// Store sets how results reach the disk (collector/store.Options).
type Store struct {
	// Sync is "normal" (a result survives the collector being killed; a
	// power loss can lose the last DurableWithin of results) or "full"
	// (every commit waits for the disk).
	Sync          string        `yaml:"sync"`
	DurableWithin time.Duration `yaml:"durable_within"`
	// Postgres, when set, is the URL of a PostgreSQL database ({file:}
	// or {env:}: it may carry a password) that several collectors share
	// instead of DATA_DIR/riv.db: each polls the devices it leases.
	Postgres Secret `yaml:"postgres"`
	// CollectorID names this collector among those sharing Postgres
	// (default HOSTNAME:DATA_DIR: stable across restarts).
	CollectorID string `yaml:"collector_id"`
	// LeaseTTL is how long a device's lease lasts unrenewed: a dead
	// collector's devices are taken over within LeaseTTL×4/3.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// Trust are the PEM files of the trust anchors.
type Trust struct {
	Manufacturers []string `yaml:"manufacturers"`
	Owner         []string `yaml:"owner"`
	RIMSigners    []string `yaml:"rim_signers"`
}

// RIMs are the sources of reference values.
type RIMs struct {
	Dirs []string `yaml:"dirs"`
	// InBand fetches the RIMs devices carry (riv-software-inventory).
	InBand *bool `yaml:"inband"`
	// Uploads accepts RIMs through POST /api/v1/rims.
	Uploads *bool `yaml:"uploads"`
}

// PolicySet is one way of appraising: devices name theirs.
type PolicySet struct {
	// Banks to quote, in preference order (sha256, sha384).
	Banks []string `yaml:"banks"`
	// MultiBank quotes and replays every bank the TPM allocates.
	MultiBank         bool `yaml:"multi_bank"`
	RequireSecureBoot bool `yaml:"require_secure_boot"`
	NoUnknownFiles    bool `yaml:"no_unknown_files"`
}

// Webhook receives every state change, signed with Secret.
type Webhook struct {
	URL    string `yaml:"url"`
	Secret Secret `yaml:"secret"`
}

// Device is one device to poll: its address and credentials here, or an
// endpoints.json (riv-router, riv-agent dev) in Endpoints.
type Device struct {
	Name      string `yaml:"name"`
	Endpoints string `yaml:"endpoints"`
	// Address is HOST:PORT of NETCONF over TLS (port 6513), SSH (830),
	// RESTCONF (443) or SNMP (161, UDP).
	Address string `yaml:"address"`
	// Transport is tls (NETCONF over TLS, the default), ssh (NETCONF over
	// SSH), restconf or snmp (SNMPv3, RIV-ATTESTATION-MIB); with
	// Endpoints, the endpoints.json's NETCONF over TLS when it has it,
	// else SSH, unless set.
	Transport string `yaml:"transport"`
	// Credentials: a TLS client certificate and key (tls, restconf), an
	// SSH user and key, or an SNMPv3 user with its SHA-256 authentication
	// and AES privacy passwords.
	ClientCert  string `yaml:"client_cert"`
	ClientKey   Secret `yaml:"client_key"`
	SSHUser     string `yaml:"ssh_user"`
	SSHKey      Secret `yaml:"ssh_key"`
	SNMPUser    string `yaml:"snmp_user"`
	SNMPAuthKey Secret `yaml:"snmp_auth_key"`
	SNMPPrivKey Secret `yaml:"snmp_priv_key"`
	// Serial and Model are what the device's IDevID must name (empty:
	// anything).
	Serial   string        `yaml:"serial"`
	Model    string        `yaml:"model"`
	Policy   string        `yaml:"policy"`
	Interval time.Duration `yaml:"interval"`
}

// Built-in policy sets, there unless the file redefines them.
const (
	DefaultPolicy = "default"
	StrictPolicy  = "strict"
)

// Default is the configuration with nothing set.
func Default() *Config {
	t := true
	return &Config{
		Listen:    "[::]:8443",
		DataDir:   "/var/lib/riv-collector",
		Poll:      Poll{Interval: 5 * time.Minute, MaxInFlight: 256, Timeout: time.Minute, KeepSessions: 5 * time.Minute},
		Retention: Retention{MaxAge: 90 * 24 * time.Hour, Keep: 100},
		Store:     Store{Sync: "normal", DurableWithin: time.Second, LeaseTTL: 30 * time.Second},
		RIMs:      RIMs{InBand: &t, Uploads: &t},
	}
}

// builtinPolicies are the policy sets every collector has.
func builtinPolicies() map[string]PolicySet {
	return map[string]PolicySet{
		DefaultPolicy: {Banks: []string{"sha256", "sha384"}},
		StrictPolicy:  {Banks: []string{"sha256", "sha384"}, RequireSecureBoot: true, NoUnknownFiles: true},
	}
}

// Load reads, decodes and validates file; relative paths in it are
// relative to its directory.
func Load(file string) (*Config, error) {
	b, err := yamlconf.Read(file)
	if err != nil {
		return nil, err
	}
	c := Default()
	lines, err := yamlconf.Decode(file, b, c)
	if err != nil {
		return nil, err
	}
	c.resolve(file)
	if err := c.Validate(); err != nil {
		return nil, lines.Locate(file, err)
	}
	return c, nil
}

// resolve makes relative paths relative to the file's directory, and
// adds the built-in policy sets the file does not redefine.
func (c *Config) resolve(file string) {
	dir := filepath.Dir(file)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, p := range []*string{&c.TLS.Cert, &c.TLS.Key, &c.TLS.ClientCA, &c.DataDir, &c.EARKey} {
		abs(p)
	}
	for _, l := range [][]string{c.Trust.Manufacturers, c.Trust.Owner, c.Trust.RIMSigners, c.RIMs.Dirs} {
		for i := range l {
			abs(&l[i])
		}
	}
	for i := range c.Devices {
		abs(&c.Devices[i].Endpoints)
		abs(&c.Devices[i].ClientCert)
	}
	for _, s := range c.secrets() {
		abs(&s.File)
	}
	if c.EARKey == "" {
		c.EARKey = filepath.Join(c.DataDir, "ear-key.pem")
	}
	if c.Store.CollectorID == "" {
		host, _ := os.Hostname()
		c.Store.CollectorID = host + ":" + c.DataDir
	}
	if c.Policies == nil {
		c.Policies = map[string]PolicySet{}
	}
	for name, p := range builtinPolicies() {
		if _, ok := c.Policies[name]; !ok {
			c.Policies[name] = p
		}
	}
}

func (c *Config) secrets() []*Secret {
	out := []*Secret{&c.Tokens.Admin, &c.Tokens.Readonly, &c.Store.Postgres}
	for i := range c.Webhooks {
		out = append(out, &c.Webhooks[i].Secret)
	}
	for i := range c.Devices {
		out = append(out, &c.Devices[i].ClientKey, &c.Devices[i].SSHKey)
	}
	return out
}

var keyErr = yamlconf.KeyErr

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// Validate checks every value, reads every secret and checks that every
// file is what its key says.
func (c *Config) Validate() error {
	c.files = &files{read: map[string]fileRead{}, pairs: map[[2]string]error{}}
	defer func() { c.files = nil }()
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return keyErr("listen", "%v", err)
	}
	if c.TLS.Cert == "" || c.TLS.Key == "" {
		return keyErr("tls", "cert and key are required: the API serves HTTPS")
	}
	if _, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key); err != nil {
		return keyErr("tls.cert", "%v", err)
	}
	if c.TLS.ClientCA != "" {
		if _, err := LoadPool(c.TLS.ClientCA); err != nil {
			return keyErr("tls.client_ca", "%v", err)
		}
	}
	if c.DataDir == "" {
		return keyErr("data_dir", "required")
	}
	for _, k := range []struct {
		key string
		s   *Secret
	}{{"tokens.admin", &c.Tokens.Admin}, {"tokens.readonly", &c.Tokens.Readonly}} {
		if err := k.s.load(k.key, c.files); err != nil {
			return err
		}
		if len(k.s.value) < 32 {
			return keyErr(k.key, "want a token of 32 characters or more")
		}
	}
	if c.Tokens.Admin.value == c.Tokens.Readonly.value {
		return keyErr("tokens.readonly", "the same as the admin token")
	}
	if c.Poll.Interval < time.Second {
		return keyErr("poll.interval", "%v: want at least 1s", c.Poll.Interval)
	}
	if c.Poll.MaxInFlight < 1 || c.Poll.MaxInFlight > 10000 {
		return keyErr("poll.max_in_flight", "%d: want 1 to 10000", c.Poll.MaxInFlight)
	}
	if c.Poll.Timeout < time.Second {
		return keyErr("poll.timeout", "%v: want at least 1s", c.Poll.Timeout)
	}
	if c.Poll.KeepSessions < time.Second || c.Poll.KeepSessions > 24*time.Hour {
		return keyErr("poll.keep_sessions", "%v: want 1s to 24h (an interval longer than it reconnects each poll)", c.Poll.KeepSessions)
	}
	if a := c.Poll.SNMPTraps; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return keyErr("poll.snmp_traps", "%q: want HOST:PORT (UDP; traps go to 162)", a)
		}
	}
	if c.Retention.MaxAge < time.Hour || c.Retention.Keep < 1 {
		return keyErr("retention", "max_age %v, keep %d: want at least 1h and 1", c.Retention.MaxAge, c.Retention.Keep)
	}
	if c.Store.Sync != "normal" && c.Store.Sync != "full" {
		return keyErr("store.sync", "%q: want normal or full", c.Store.Sync)
	}
	if c.Store.DurableWithin < 10*time.Millisecond || c.Store.DurableWithin > time.Minute {
		return keyErr("store.durable_within", "%v: want 10ms to 1m", c.Store.DurableWithin)
	}
	if c.Store.Postgres.set() {
		if err := c.Store.Postgres.load("store.postgres", c.files); err != nil {
			return err
		}
		if c.Store.LeaseTTL < 3*time.Second || c.Store.LeaseTTL > 10*time.Minute {
			return keyErr("store.lease_ttl", "%v: want 3s to 10m", c.Store.LeaseTTL)
		}
		if len(c.Store.CollectorID) > 256 {
			return keyErr("store.collector_id", "longer than 256 characters")
		}
	}
	if len(c.Trust.Manufacturers) == 0 {
		return keyErr("trust.manufacturers", "required: the CAs of the devices' IDevIDs")
	}
	for key, files := range map[string][]string{"trust.manufacturers": c.Trust.Manufacturers, "trust.owner": c.Trust.Owner, "trust.rim_signers": c.Trust.RIMSigners} {
		for i, f := range files {
			if _, err := LoadPool(f); err != nil {
				return keyErr(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			}
		}
	}
	if len(c.Trust.RIMSigners) == 0 && (len(c.RIMs.Dirs) > 0 || *c.RIMs.InBand || *c.RIMs.Uploads) {
		return keyErr("trust.rim_signers", "required with RIM directories, in-band or uploaded RIMs: the vendor CAs that sign them")
	}
	for i, d := range c.RIMs.Dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return keyErr(fmt.Sprintf("rims.dirs[%d]", i), "%s: not a directory", d)
		}
	}
	for name, p := range c.Policies {
		key := "policies." + name
		if !nameRE.MatchString(name) {
			return keyErr(key, "a policy set's name is 1-128 letters, digits and ._:-")
		}
		if len(p.Banks) == 0 {
			return keyErr(key+".banks", "required")
		}
		for i, b := range p.Banks {
			if _, err := ParseBank(b); err != nil {
				return keyErr(fmt.Sprintf("%s.banks[%d]", key, i), "%v", err)
			}
		}
	}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		key := fmt.Sprintf("webhooks[%d]", i)
		if !strings.HasPrefix(w.URL, "https://") && !strings.HasPrefix(w.URL, "http://") {
			return keyErr(key+".url", "%q: want an http(s) URL", w.URL)
		}
		if err := w.Secret.load(key+".secret", c.files); err != nil {
			return err
		}
		if len(w.Secret.value) < 16 {
			return keyErr(key+".secret", "want a secret of 16 characters or more")
		}
	}
	names := map[string]bool{}
	for i := range c.Devices {
		if err := c.Devices[i].validate(fmt.Sprintf("devices[%d]", i), c, names); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) validate(key string, c *Config, names map[string]bool) error {
	if d.Endpoints != "" {
		ep, err := endpoint.Read(d.Endpoints)
		if err != nil {
			return keyErr(key+".endpoints", "%v", err)
		}
		if d.Address != "" || d.ClientCert != "" || d.SSHUser != "" || d.ClientKey.set() || d.SSHKey.set() {
			return keyErr(key, "endpoints names the addresses and credentials: no address, client_cert, client_key, ssh_user or ssh_key with it")
		}
		if d.Name == "" {
			d.Name = ep.Serial
		}
	}
	if !nameRE.MatchString(d.Name) {
		return keyErr(key+".name", "%q: want 1-128 letters, digits and ._:-", d.Name)
	}
	if names[d.Name] {
		return keyErr(key+".name", "%q: a second device of that name", d.Name)
	}
	names[d.Name] = true
	if d.Policy == "" {
		d.Policy = DefaultPolicy
	}
	if _, ok := c.Policies[d.Policy]; !ok {
		return keyErr(key+".policy", "%q: no such policy set (%s)", d.Policy, strings.Join(slices.Sorted(maps.Keys(c.Policies)), ", "))
	}
	if d.Interval != 0 && d.Interval < time.Second {
		return keyErr(key+".interval", "%v: want at least 1s", d.Interval)
	}
	if d.Endpoints != "" {
		switch d.Transport {
		case "", "tls", "ssh", "restconf", "snmp":
			return nil
		}
		return keyErr(key+".transport", "%q: want tls, ssh, restconf or snmp", d.Transport)
	}
	if _, _, err := net.SplitHostPort(d.Address); err != nil {
		return keyErr(key+".address", "%v", err)
	}
	switch d.Transport {
	case "", "tls", "restconf":
		if d.Transport == "" {
			d.Transport = "tls"
		}
		if d.ClientCert == "" || !d.ClientKey.set() {
			return keyErr(key, "transport %s needs client_cert and client_key", d.Transport)
		}
		if err := d.ClientKey.load(key+".client_key", c.files); err != nil {
			return err
		}
		cert, _, err := c.files.readFile(d.ClientCert)
		if err != nil {
			return keyErr(key+".client_cert", "%v", err)
		}
		if err := c.files.keyPair(cert, d.ClientKey.value); err != nil {
			return keyErr(key+".client_key", "does not go with client_cert: %v", err)
		}
	case "ssh":
		if d.SSHUser == "" || !d.SSHKey.set() {
			return keyErr(key, "transport ssh needs ssh_user and ssh_key")
		}
		if err := d.SSHKey.load(key+".ssh_key", c.files); err != nil {
			return err
		}
		if blk, _ := pem.Decode([]byte(d.SSHKey.value)); blk == nil {
			return keyErr(key+".ssh_key", "not a PEM private key")
		}
	case "snmp":
		if d.SNMPUser == "" || !d.SNMPAuthKey.set() || !d.SNMPPrivKey.set() {
			return keyErr(key, "transport snmp needs snmp_user, snmp_auth_key and snmp_priv_key")
		}
		for _, k := range []struct {
			name string
			s    *Secret
		}{{".snmp_auth_key", &d.SNMPAuthKey}, {".snmp_priv_key", &d.SNMPPrivKey}} {
			if err := k.s.load(key+k.name, c.files); err != nil {
				return err
			}
			if len(k.s.value) < 8 {
				return keyErr(key+k.name, "an SNMPv3 password has at least 8 characters (RFC 3414 §11.2)")
			}
		}
	default:
		return keyErr(key+".transport", "%q: want tls, ssh, restconf or snmp", d.Transport)
	}
	return nil
}

// ParseBank parses a PCR bank name (alg.ParseHash): one of the banks a
// policy set may quote.
func ParseBank(s string) (alg.ID, error) {
	id, err := alg.ParseHash(s)
	if err != nil || (id != alg.SHA256 && id != alg.SHA384 && id != alg.SHA512) {
		return 0, fmt.Errorf("%q: want sha256, sha384 or sha512", s)
	}
	return id, nil
}

// LoadPool reads PEM certificates into a pool.
var LoadPool = verifier.LoadPool

// Secret is a credential: in the file, {file: PATH} (its first line, or
// the whole file for a PEM key) or {env: NAME}. Its value is never
// printed, logged or marshalled.
type Secret struct {
	File  string `yaml:"file"`
	Env   string `yaml:"env"`
	value string
}

// Value is the secret (after Validate).
func (s *Secret) Value() string { return s.value }

func (s *Secret) set() bool { return s.File != "" || s.Env != "" }

// UnmarshalYAML refuses a secret written into the file itself: the
// configuration is shared, backed up and pasted into tickets.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return &yamlconf.Error{Line: n.Line, Msg: "a secret is not written in the file: use {file: PATH} or {env: NAME}"}
	}
	type plain Secret
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Secret(p)
	return nil
}

// files are the files one Validate read, by path: an inventory of
// 100,000 devices names the same client key and certificate 100,000
// times (reading and checking each again took most of a start).
type files struct {
	read  map[string]fileRead
	pairs map[[2]string]error // certificate PEM, key PEM: tls.X509KeyPair's verdict
}

type fileRead struct {
	b    []byte
	mode fs.FileMode
	err  error
}

func (fc *files) readFile(path string) ([]byte, fs.FileMode, error) {
	if fc == nil {
		return readFile(path)
	}
	r, ok := fc.read[path]
	if !ok {
		r.b, r.mode, r.err = readFile(path)
		fc.read[path] = r
	}
	return r.b, r.mode, r.err
}

func readFile(path string) ([]byte, fs.FileMode, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	return b, st.Mode().Perm(), nil
}

// keyPair checks that a certificate and a key go together.
func (fc *files) keyPair(cert []byte, key string) error {
	if fc == nil {
		_, err := tls.X509KeyPair(cert, []byte(key))
		return err
	}
	k := [2]string{string(cert), key}
	err, ok := fc.pairs[k]
	if !ok {
		_, err = tls.X509KeyPair(cert, []byte(key))
		fc.pairs[k] = err
	}
	return err
}

func (s *Secret) load(key string, fc *files) error {
	switch {
	case s.File != "" && s.Env != "":
		return keyErr(key, "file or env, not both")
	case s.File != "":
		b, mode, err := fc.readFile(s.File)
		if err != nil {
			return keyErr(key+".file", "%v", err)
		}
		if mode&0o077 != 0 {
			return keyErr(key+".file", "%s is readable by others (mode %v): chmod 600 it", s.File, mode)
		}
		v := string(b)
		if !strings.Contains(v, "-----BEGIN") {
			v, _, _ = strings.Cut(v, "\n")
			v = strings.TrimRight(v, "\r")
		}
		s.value = v
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return keyErr(key+".env", "$%s is not set", s.Env)
		}
		s.value = v
	default:
		return keyErr(key, "required ({file: PATH} or {env: NAME})")
	}
	if s.value == "" {
		return keyErr(key, "empty")
	}
	return nil
}

const redacted = "[redacted]"

// String, GoString, MarshalText and LogValue never show the value.
func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
