package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/config"
	"github.com/openriv/riv/agent/daemon"
	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/logsrc"
	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/provision"
	"github.com/openriv/riv/agent/snmp"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/tpm"
)

const serveHelp = `Runs the attester on a router: the TPM (shared with the kernel; held only
for each command), the kernel's measurement logs read as they grow, the
keys that provision left in the TPM, and the servers of the config file.
SIGHUP re-reads the file and applies its users, NACM and SNMP users
without ending a session (other changes need a restart, and a file that
does not validate is refused with the old config kept); SIGTERM or
SIGINT stop accepting connections, let the RPCs being answered finish
(limits.drain_timeout) and exit. With --ready-file, the addresses
listened on are written there (JSON, atomically) once serving.`

const configCheckHelp = `Validates FILE as serve would read it — strict YAML (unknown keys are
errors with their line), every value, and every file it names (the
certificates, authorized keys, client CA, SNMP password files) read and
parsed — without touching the TPM. Exit 0 when serve would accept it,
2 with the first problem otherwise.`

func runServe(env *cli.Env, args []string) error {
	fs := env.Flags()
	file := fs.String("config", "/etc/riv/agent.yaml", "configuration file")
	ready := fs.String("ready-file", "", "write the listen addresses here (JSON) once serving")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("serve: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	access, err := loadAccess(cfg)
	if err != nil {
		return cli.Usage("serve: %s: %v", *file, err)
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tp, err := tpm.OpenShared(octx, cfg.TPM)
	if err != nil {
		return cli.Unreachable("serve: TPM %s: %v", cfg.TPM, err)
	}
	defer tp.Close()
	id, err := loadIdentity(octx, tp, cfg)
	if err != nil {
		return cli.Failed("serve: %v", err)
	}
	cards, err := openLineCards(octx, cfg)
	if err != nil {
		return err
	}
	acfg := attester.Config{
		TPM: tp, TPMName: cfg.Name, Manufacturer: cfg.Manufacturer, HardwareBased: hardwareBased(cfg.HardwareBased, cfg.TPM),
		Certificates: id.certs, Logs: &logsrc.Files{Paths: logPaths(cfg.Logs)}, LogTypes: logTypes(cfg.Logs),
		BootTime: bootTime(), QuotesPerSecond: cfg.Limits.QuotesPerSecond, QuoteBurst: quoteBurst(cfg.Limits.QuotesPerSecond),
		LineCards: cards,
	}
	if len(cards) > 0 {
		acfg.Node = attester.Node{ID: controlNode, Name: controlNode}
	}
	att, err := attester.New(octx, acfg)
	if err != nil {
		return cli.Unreachable("serve: %v", err)
	}
	// The software inventory and its RIMs, as the NOS installs them; a
	// reload reads the directory again.
	var inv atomic.Pointer[inventory.Inventory]
	var invFn func() *inventory.Inventory
	if cfg.Inventory != "" {
		i, err := inventory.Load(cfg.Inventory)
		if err != nil {
			return cli.Usage("serve: inventory: %v", err)
		}
		inv.Store(i)
		invFn = inv.Load
	}
	clientCAs, err := certPool(cfg.TLS.ClientCA)
	if err != nil {
		return cli.Usage("serve: tls.client_ca: %v", err)
	}
	ctn, err := certToName(cfg.TLS.CertToName)
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	d, err := daemon.Start(daemon.Options{
		NETCONF: netconf.Config{Attester: att, Inventory: invFn, IdleTimeout: cfg.NETCONF.IdleTimeout, MaxMessageSize: cfg.Limits.MaxMessageSize,
			Limits: netconf.Limits{MaxSessionsPerUser: cfg.Limits.MaxSessionsPerUser}},
		Identity: id.tls, ClientCAs: clientCAs, CertToName: ctn, Access: access,
		SNMP: snmp.Config{Name: snmpName(cfg, id.tls.Leaf), BootsFile: cfg.SNMP.BootsFile,
			Targets: notifyTargets(cfg.SNMP.Notify), StateFile: cfg.SNMP.NotifyStateFile, WatchEvery: cfg.SNMP.WatchInterval,
			SysName: cfg.Device.Name, SysContact: cfg.Device.Contact, SysLocation: cfg.Device.Location},
		Listen: daemon.Listen{NetconfSSH: on(cfg.Listen.NetconfSSH), NetconfTLS: on(cfg.Listen.NetconfTLS),
			RESTCONF: on(cfg.Listen.RESTCONF), SNMP: on(cfg.Listen.SNMP)},
		AgentX: cfg.SNMP.AgentX,
		Logger: log,
	})
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	addrs := map[string]string{"netconf_ssh": d.SSHAddr, "netconf_tls": d.TLSAddr, "restconf": d.RESTCONFAddr, "snmp": d.SNMPAddr}
	if *ready != "" {
		b, _ := json.Marshal(addrs)
		if err := atomicfile.Write(*ready, append(b, '\n'), 0o644); err != nil {
			d.Close()
			return cli.Usage("serve: --ready-file: %v", err)
		}
	}
	log.Info("serving", "config", *file, "tpm", cfg.TPM, "identity", id.tls.Leaf.Subject.String(),
		"netconf_ssh", d.SSHAddr, "netconf_tls", d.TLSAddr, "restconf", d.RESTCONFAddr, "snmp", d.SNMPAddr)
	for {
		select {
		case <-hup:
			reload(*file, cfg, d, log)
			if cfg.Inventory != "" {
				if i, err := inventory.Load(cfg.Inventory); err != nil {
					log.Error("inventory reload refused; the served inventory is kept", "err", err)
				} else {
					inv.Store(i)
				}
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	log.Info("draining", "timeout", cfg.Limits.DrainTimeout)
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.Limits.DrainTimeout)
	defer dcancel()
	if err := d.Shutdown(dctx); err != nil {
		log.Warn("stopped before every RPC finished", "err", err)
	}
	log.Info("stopped")
	return nil
}

// quoteBurst lets a client quote twice the rate at once, at least one
// quote (0 for the attester's default rate, and then its burst).
func quoteBurst(perSecond float64) int {
	if perSecond == 0 {
		return 0
	}
	return max(1, int(2*perSecond))
}

// controlNode is the compute node of the main TPM on a device with line
// cards; each card's node is named as the card.
const controlNode = "control"

// openLineCards opens each line card's TPM (shared, as the main one) and
// loads its attestation key.
func openLineCards(ctx context.Context, cfg *config.Config) ([]attester.Card, error) {
	var out []attester.Card
	for i, lc := range cfg.LineCards {
		key := fmt.Sprintf("line_cards[%d]", i)
		tp, err := tpm.OpenShared(ctx, lc.TPM)
		if err != nil {
			return nil, cli.Unreachable("serve: %s: TPM %s: %v", key, lc.TPM, err)
		}
		cert, err := provision.LoadCert(lc.IAK.Cert)
		if err != nil {
			return nil, cli.Usage("serve: %s.iak.cert: %v", key, err)
		}
		k, err := tp.LoadPersistent(ctx, lc.IAK.Handle)
		if err != nil {
			return nil, cli.Failed("serve: %s.iak: %v (was the card provisioned?)", key, err)
		}
		if e, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(k.Public.Key) || !k.Spec.Restricted {
			return nil, cli.Failed("serve: %s.iak: %s does not certify the restricted key at handle 0x%08x", key, lc.IAK.Cert, lc.IAK.Handle)
		}
		name := lc.Name + "-iak"
		out = append(out, attester.Card{
			Node: attester.Node{ID: lc.Name, Name: lc.Name}, TPM: tp, TPMName: lc.Name, HardwareBased: hardwareBased(lc.HardwareBased, lc.TPM),
			Certificates: []attester.Certificate{{Name: name, Type: attester.CertIAK, Cert: cert, Key: k, KeystoreRef: name}},
			Logs:         &logsrc.Files{Paths: logPaths(lc.Logs)}, LogTypes: logTypes(lc.Logs), BootTime: bootTime(),
		})
	}
	return out, nil
}

// reload applies what SIGHUP may change; a file that does not validate
// changes nothing.
func reload(file string, old *config.Config, d *daemon.Daemon, log *slog.Logger) {
	cfg, err := config.Load(file)
	if err == nil {
		var a daemon.Access
		if a, err = loadAccess(cfg); err == nil {
			err = d.Reload(a)
		}
	}
	if err != nil {
		log.Error("reload refused; the running configuration is kept", "err", err)
		return
	}
	restart := restartKeys(old, cfg)
	if len(restart) > 0 {
		log.Warn("reloaded users, NACM and SNMP users; other changes need a restart", "changed", strings.Join(restart, ","))
		return
	}
	log.Info("reloaded users, NACM and SNMP users", "config", file)
}

// restartKeys are the top-level keys whose change a reload does not
// apply: everything but the users, NACM and the SNMP users.
func restartKeys(old, cur *config.Config) []string {
	a, b := *old, *cur
	for _, c := range []*config.Config{&a, &b} {
		c.NETCONF.Users, c.NACM, c.SNMP.Users = nil, config.NACM{}, nil
	}
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
			out = append(out, name)
		}
	}
	return out
}

func runConfigCheck(env *cli.Env, args []string) error {
	fs := env.Flags()
	asJSON := fs.Bool("json", false, "print the effective configuration as JSON (secrets are file names only)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usage("config check: want one FILE")
	}
	file := fs.Arg(0)
	cfg, err := config.Load(file)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if _, err := loadAccess(cfg); err != nil {
		return cli.Usage("%s: %v", file, err)
	}
	for _, k := range keyFiles(cfg) {
		if _, err := provision.LoadCert(k.path); err != nil {
			return cli.Usage("%s: %s: %v", file, k.key, err)
		}
	}
	if cfg.Identity.Chain != "" {
		if _, err := readCerts(cfg.Identity.Chain); err != nil {
			return cli.Usage("%s: identity.chain: %v", file, err)
		}
	}
	if cfg.Inventory != "" {
		if _, err := inventory.Load(cfg.Inventory); err != nil {
			return cli.Usage("%s: inventory: %v", file, err)
		}
	}
	if _, err := certPool(cfg.TLS.ClientCA); err != nil {
		return cli.Usage("%s: tls.client_ca: %v", file, err)
	}
	for i, lc := range cfg.LineCards {
		if _, err := provision.LoadCert(lc.IAK.Cert); err != nil {
			return cli.Usage("%s: line_cards[%d].iak.cert: %v", file, i, err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg)
	}
	fmt.Fprintf(env.Stdout, "%s: ok\n", file)
	return nil
}

type keyFile struct{ key, path string }

func keyFiles(cfg *config.Config) []keyFile {
	out := []keyFile{{"identity.idevid.cert", cfg.Identity.IDevID.Cert}, {"identity.iak.cert", cfg.Identity.IAK.Cert}}
	if cfg.Identity.LDevID != nil {
		out = append(out, keyFile{"identity.ldevid.cert", cfg.Identity.LDevID.Cert})
	}
	if cfg.Identity.LAK != nil {
		out = append(out, keyFile{"identity.lak.cert", cfg.Identity.LAK.Cert})
	}
	return out
}

// loadAccess reads what a reload may change: authorized keys, NACM and
// the SNMP users' passwords.
func loadAccess(cfg *config.Config) (daemon.Access, error) {
	a := daemon.Access{SSHKeys: map[string][]ssh.PublicKey{}}
	for i, u := range cfg.NETCONF.Users {
		keys, err := authorizedKeys(u.AuthorizedKeys)
		if err != nil {
			return a, fmt.Errorf("netconf.users[%d].authorized_keys: %w", i, err)
		}
		a.SSHKeys[u.Name] = keys
	}
	a.NACM = netconf.NACM{Groups: cfg.NACM.Groups, ExecDefault: cfg.NACM.ExecDefault}
	for _, r := range cfg.NACM.Rules {
		a.NACM.Rules = append(a.NACM.Rules, netconf.Rule{Group: r.Group, Operation: r.Operation, Action: r.Action})
	}
	for i, u := range cfg.SNMP.Users {
		auth, err := config.ReadSecret(u.AuthKeyFile)
		if err != nil {
			return a, fmt.Errorf("snmp.users[%d].auth_key_file: %w", i, err)
		}
		priv, err := config.ReadSecret(u.PrivKeyFile)
		if err != nil {
			return a, fmt.Errorf("snmp.users[%d].priv_key_file: %w", i, err)
		}
		a.SNMPUsers = append(a.SNMPUsers, snmp.User{Name: u.Name, AuthPassword: snmp.Secret(auth), PrivPassword: snmp.Secret(priv)})
	}
	return a, nil
}

// authorizedKeys parses an OpenSSH authorized_keys file (comments and
// blank lines skipped; options are not supported and refused).
func authorizedKeys(path string) ([]ssh.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ssh.PublicKey
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n+1, err)
		}
		if len(opts) > 0 {
			return nil, fmt.Errorf("%s:%d: key options (%s) are not supported", path, n+1, strings.Join(opts, ","))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys", path)
	}
	return keys, nil
}

type identityKeys struct {
	tls   tls.Certificate
	certs []attester.Certificate
}

// loadIdentity loads the persistent keys and their certificates and
// checks that each certificate is the key's.
func loadIdentity(ctx context.Context, tp *tpm.TPM, cfg *config.Config) (*identityKeys, error) {
	load := func(key string, k config.Key, restricted bool) (*tpm.Key, *x509.Certificate, error) {
		cert, err := provision.LoadCert(k.Cert)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.cert: %w", key, err)
		}
		tk, err := tp.LoadPersistent(ctx, k.Handle)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (was the device provisioned? riv-agent provision)", key, err)
		}
		if e, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(tk.Public.Key) {
			return nil, nil, fmt.Errorf("%s: %s does not certify the key at handle 0x%08x", key, k.Cert, k.Handle)
		}
		if tk.Spec.Restricted != restricted {
			want := "a restricted signing key (an attestation key)"
			if !restricted {
				want = "an unrestricted signing key (a TLS/SSH identity)"
			}
			return nil, nil, fmt.Errorf("%s: the key at handle 0x%08x is not %s", key, k.Handle, want)
		}
		return tk, cert, nil
	}
	idk, idc, err := load("identity.idevid", cfg.Identity.IDevID, false)
	if err != nil {
		return nil, err
	}
	iak, iakc, err := load("identity.iak", cfg.Identity.IAK, true)
	if err != nil {
		return nil, err
	}
	out := &identityKeys{certs: []attester.Certificate{
		{Name: "iak", Type: attester.CertIAK, Cert: iakc, Key: iak, KeystoreRef: "iak"},
		{Name: "idevid", Cert: idc, KeystoreRef: "idevid"},
	}}
	useKey, useCert := idk, idc
	if cfg.Identity.LAK != nil {
		lak, lakc, err := load("identity.lak", *cfg.Identity.LAK, true)
		if err != nil {
			return nil, err
		}
		out.certs = append(out.certs, attester.Certificate{Name: "lak", Type: attester.CertLAK, Cert: lakc, Key: lak, KeystoreRef: "lak"})
	}
	if cfg.Identity.LDevID != nil {
		ldk, ldc, err := load("identity.ldevid", *cfg.Identity.LDevID, false)
		if err != nil {
			return nil, err
		}
		out.certs = append(out.certs, attester.Certificate{Name: "ldevid", Cert: ldc, KeystoreRef: "ldevid"})
		if cfg.Identity.Use == "ldevid" {
			useKey, useCert = ldk, ldc
		}
	}
	signer, err := tp.Signer(useKey)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{useCert.Raw}
	if cfg.Identity.Chain != "" {
		cs, err := readCerts(cfg.Identity.Chain)
		if err != nil {
			return nil, fmt.Errorf("identity.chain: %w", err)
		}
		for _, c := range cs {
			chain = append(chain, c.Raw)
		}
	}
	out.tls = tls.Certificate{Certificate: chain, PrivateKey: signer, Leaf: useCert}
	return out, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

func certPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return x509.NewCertPool(), nil
	}
	cs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p, nil
}

func certToName(in []config.CertToName) ([]netconf.CertToName, error) {
	var out []netconf.CertToName
	for i, m := range in {
		c := netconf.CertToName{MapType: m.MapType, Name: m.Name}
		if m.Fingerprint != "" {
			fp, err := config.Fingerprint(m.Fingerprint)
			if err != nil {
				return nil, fmt.Errorf("tls.cert_to_name[%d].fingerprint: %w", i, err)
			}
			c.Fingerprint = fp
		}
		out = append(out, c)
	}
	return out, nil
}

func logPaths(l config.Logs) map[attester.LogType]string {
	m := map[attester.LogType]string{}
	for t, p := range map[attester.LogType]string{attester.LogBIOS: l.BIOS, attester.LogIMA: l.IMA, attester.LogNetequip: l.NetequipBoot} {
		if p != "" {
			m[t] = p
		}
	}
	return m
}

func logTypes(l config.Logs) []attester.LogType {
	var out []attester.LogType
	for _, t := range []struct {
		t attester.LogType
		p string
	}{{attester.LogBIOS, l.BIOS}, {attester.LogIMA, l.IMA}, {attester.LogNetequip, l.NetequipBoot}} {
		if t.p != "" {
			out = append(out, t.t)
		}
	}
	return out
}

func hardwareBased(set *bool, spec string) bool {
	if set != nil {
		return *set
	}
	return !strings.HasPrefix(spec, "swtpm:")
}

func on(addr string) string {
	if addr == config.Off {
		return ""
	}
	return addr
}

// notifyTargets are snmp.notify as the SNMP engine takes them.
func notifyTargets(ns []config.NotifyTarget) []snmp.Target {
	var out []snmp.Target
	for _, n := range ns {
		t := snmp.Target{Addr: n.Address, User: n.User, Inform: n.Type == "inform", Timeout: n.Timeout, Retries: 3}
		if n.Retries != nil {
			t.Retries = *n.Retries
		}
		out = append(out, t)
	}
	return out
}

// snmpName names the SNMP engine: the device name, or the serial number
// in the identity certificate.
func snmpName(cfg *config.Config, id *x509.Certificate) string {
	if cfg.Device.Name != "" {
		return cfg.Device.Name
	}
	if id.Subject.SerialNumber != "" {
		return id.Subject.SerialNumber
	}
	return "riv"
}

// bootTime is when the system booted (/proc/uptime), for up-time.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Now()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Now()
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(up * float64(time.Second)))
}
