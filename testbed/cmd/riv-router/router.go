package main

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/provision"
	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/internal/lockdir"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/endpoint"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
	"github.com/openriv/riv/pkg/tpm/swtpm"
)

// state is DIR/router.json: what measure and reboot need to know about
// the running router.
type state struct {
	Serial  string   `json:"serial"`
	Model   string   `json:"model"`
	Version string   `json:"image_version"`
	Attack  string   `json:"attack"`
	BIOSLog string   `json:"bios_log,omitempty"` // the captured log, copied into DIR
	Banks   []string `json:"banks"`
	TPM     string   `json:"tpm"` // pkg/tpm spec
	Ctrl    string   `json:"ctrl"`
	// The kernel-format logs.
	BIOS string `json:"bios"`
	IMA  string `json:"ima"`
	// Cards are the line cards, each with its own TPM and logs.
	Cards []card `json:"cards,omitempty"`
	// AgentPID is the running riv-agent serve's (for signals: SIGHUP
	// reloads its configuration).
	AgentPID int `json:"agent_pid,omitempty"`
	// Boots counts the boots; reboot waits for it to grow.
	Boots int `json:"boots"`
	// Local: the owner's LDevID/LAK are enrolled and the LDevID is the
	// transport identity.
	Local       bool   `json:"local,omitempty"`
	RebootError string `json:"reboot_error,omitempty"`
	// Notify are the agent's notification targets, "trap HOST:PORT" or
	// "inform HOST:PORT".
	Notify []string `json:"notify,omitempty"`
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, "router.json"))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s/router.json: %w", dir, err)
	}
	return &s, nil
}

func (s *state) write(dir string) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return atomicfile.Write(filepath.Join(dir, "router.json"), append(b, '\n'), 0o644)
}

// card is a line card: its TPM, logs and what it boots.
type card struct {
	Name   string `json:"name"`
	TPM    string `json:"tpm"`
	Ctrl   string `json:"ctrl"`
	BIOS   string `json:"bios"`
	IMA    string `json:"ima"`
	Attack string `json:"attack"`
}

// bankNames names the TPM banks swtpm_setup allocates for a log.
func bankNames(banks []alg.ID) ([]string, error) {
	var out []string
	for _, b := range banks {
		switch b {
		case alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512:
			out = append(out, b.String())
		default:
			return nil, fmt.Errorf("%w: swtpm cannot allocate a %v bank", router.ErrUnreproducible, b)
		}
	}
	return out, nil
}

func runRouter(env *cli.Env, args []string) error {
	fs := env.Flags()
	dir := fs.String("dir", "", "the router's directory (TPM state, keys, logs, agent.yaml, endpoints.json)")
	biosLog := fs.String("bios-log", "", "boot a captured TCG firmware log (binary_bios_measurements) instead of the simulated firmware")
	serial := fs.String("serial", "RTR-0001", "device serial number")
	version := fs.String("image-version", "2.0", "router image version")
	atk := fs.String("attack", "none", "boot with an attack: "+strings.Join(attack.Names, ", "))
	agentBin := fs.String("agent", "", "riv-agent binary (default: beside riv-router, else on PATH)")
	lineCards := fs.Int("line-cards", 0, "line cards, each with its own TPM (swtpm), provisioned IAK and measured boot")
	local := fs.Bool("local", false, "also enrol the owner's LDevID and LAK (a testbed owner CA) and identify with the LDevID")
	cardAttack := fs.String("card-attack", "none", "boot the last line card with an attack: "+strings.Join(attack.Names, ", "))
	var notify []string
	fs.Func("notify", "send SNMPv3 notifications to `[trap|inform:]HOST:PORT` (as user riv; repeatable; default trap)", func(v string) error {
		kind, addr, ok := strings.Cut(v, ":")
		if !ok || kind != "trap" && kind != "inform" {
			kind, addr = "trap", v
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%q: want [trap|inform:]HOST:PORT", v)
		}
		notify = append(notify, kind+" "+addr)
		return nil
	})
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("unexpected argument %q", fs.Arg(0))
	}
	if *dir == "" {
		return cli.Usage("--dir is required")
	}
	if *lineCards < 0 || *lineCards > 8 {
		return cli.Usage("--line-cards %d: want 0 to 8", *lineCards)
	}
	if _, err := attack.BootImage(*cardAttack, router.DefaultImage(*version)); err != nil {
		return cli.Usage("--card-attack: %v", err)
	}
	genuine := router.DefaultImage(*version)
	img, err := attack.BootImage(*atk, genuine)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if *biosLog != "" && *atk != "none" && *atk != "unknown-binary" {
		return cli.Usage("--attack %s changes the simulated firmware; with --bios-log only none and unknown-binary apply", *atk)
	}
	agent, err := findAgent(*agentBin)
	if err != nil {
		return cli.Usage("%v", err)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return cli.Usage("%v", err)
	}
	unlock, err := lockdir.Lock(abs, "riv-router")
	if err != nil {
		return err
	}
	defer unlock()
	log := slog.New(slog.NewTextHandler(env.Stderr, nil)).With("router", *serial)

	st := &state{Serial: *serial, Model: genuine.Model, Version: *version, Attack: *atk, Banks: []string{"sha256", "sha384"},
		TPM: "swtpm:" + filepath.Join(abs, "tpm.sock"), Ctrl: filepath.Join(abs, "tpm.ctrl"),
		BIOS: filepath.Join(abs, "securityfs", "tpm0", "binary_bios_measurements"),
		IMA:  filepath.Join(abs, "securityfs", "ima", "binary_runtime_measurements")}
	if old, err := readState(abs); err == nil {
		st.Boots = old.Boots
	}
	st.Local = *local
	st.Notify = notify
	for i := 1; i <= *lineCards; i++ {
		name := fmt.Sprintf("lc%d", i)
		c := card{Name: name, TPM: "swtpm:" + filepath.Join(abs, name+".sock"), Ctrl: filepath.Join(abs, name+".ctrl"),
			BIOS: filepath.Join(abs, name, "securityfs", "tpm0", "binary_bios_measurements"), IMA: filepath.Join(abs, name, "securityfs", "ima", "binary_runtime_measurements"), Attack: "none"}
		if i == *lineCards {
			c.Attack = *cardAttack
		}
		for _, d := range []string{filepath.Dir(c.BIOS), filepath.Dir(c.IMA)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		st.Cards = append(st.Cards, c)
	}
	if *biosLog != "" {
		raw, err := os.ReadFile(*biosLog)
		if err != nil {
			return cli.Usage("--bios-log: %v", err)
		}
		l, err := eventlog.ParseTCG(raw)
		if err != nil {
			return cli.Usage("--bios-log %s: %v", *biosLog, err)
		}
		if st.Banks, err = bankNames(l.Banks); err != nil {
			return cli.Failed("--bios-log %s: %v", *biosLog, err)
		}
		st.BIOSLog = filepath.Join(abs, "firmware.bin")
		if err := atomicfile.Write(st.BIOSLog, raw, 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{"securityfs/tpm0", "securityfs/ima", "certs", "rims", "users", "snmp", "mfr"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Info("manufacturing the TPM", "banks", strings.Join(st.Banks, ","))
	tst, err := swtpm.Manufacture(filepath.Join(abs, "tpm"), st.Banks)
	if err != nil {
		return cli.Failed("%v", err)
	}
	proc, err := swtpm.Start(tst, strings.TrimPrefix(st.TPM, "swtpm:"), st.Ctrl)
	if err != nil {
		return cli.Failed("%v", err)
	}
	defer proc.Stop()
	// Stopped, the router shuts its TPM down in order, as its OS would,
	// after the agent has stopped.
	defer shutdownTPM(st.TPM)
	if err := resetLockout(ctx, st.TPM); err != nil {
		return cli.Failed("%v", err)
	}

	mfr, err := loadOrCreateCA(filepath.Join(abs, "mfr"), "RIV Testbed Manufacturer")
	if err != nil {
		return err
	}
	log.Info("provisioning IDevID and IAK", "agent", agent)
	provision := func(spec, certs string, ca *swtpm.State, caDir string, extra ...string) error {
		args := append([]string{"provision", "--tpm", spec, "--dir", certs, "--serial", *serial, "--model", genuine.Model,
			"--ca-cert", filepath.Join(caDir, "ca.pem"), "--ca-key", filepath.Join(caDir, "ca.key"), "--tpm-ca", ca.CARoot, "--tpm-ca", ca.CAIntermediate}, extra...)
		if out, err := exec.CommandContext(ctx, agent, args...).CombinedOutput(); err != nil {
			return cli.Failed("riv-agent provision: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := provision(st.TPM, filepath.Join(abs, "certs"), tst, filepath.Join(abs, "mfr")); err != nil {
		return err
	}
	if st.Local {
		// The owner enrols its own identity and attestation key (RFC 9683
		// §2.2) with its CA, after the manufacturer's.
		owner, err := loadOrCreateCA(filepath.Join(abs, "owner"), "RIV Testbed Owner")
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(abs, "owner-ca.pem"), pemCert(owner.Cert), 0o644); err != nil {
			return err
		}
		if err := provision(st.TPM, filepath.Join(abs, "certs"), tst, filepath.Join(abs, "owner"), "--local"); err != nil {
			return err
		}
	}
	// Each line card: its own TPM from the factory, its own IAK (issued
	// for the chassis' serial number: the card is part of the device).
	for _, c := range st.Cards {
		cst, err := swtpm.Manufacture(filepath.Join(abs, c.Name, "tpm"), st.Banks)
		if err != nil {
			return cli.Failed("%s: %v", c.Name, err)
		}
		cp, err := swtpm.Start(cst, strings.TrimPrefix(c.TPM, "swtpm:"), c.Ctrl)
		if err != nil {
			return cli.Failed("%s: %v", c.Name, err)
		}
		defer cp.Stop()
		defer shutdownTPM(c.TPM)
		if err := resetLockout(ctx, c.TPM); err != nil {
			return cli.Failed("%s: %v", c.Name, err)
		}
		if err := provision(c.TPM, filepath.Join(abs, c.Name, "certs"), cst, filepath.Join(abs, "mfr")); err != nil {
			return err
		}
	}

	r := &rig{dir: abs, st: st, img: img, agent: agent, log: log}
	if err := r.boot(ctx); err != nil {
		return cli.Failed("boot: %v", err)
	}
	if err := r.publish(ctx, genuine); err != nil {
		return cli.Failed("vendor RIMs: %v", err)
	}
	// The NOS installs each component's signed RIMs with it: those of
	// the version booted (a rollback carries the old RIMs).
	installed := img.Version
	if err := os.RemoveAll(filepath.Join(abs, "inventory")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(abs, "inventory"), 0o755); err != nil {
		return err
	}
	if err := inventory.InstallFlat(filepath.Join(abs, "inventory"), filepath.Join(abs, "rims"), installed); err != nil {
		return cli.Failed("install the inventory: %v", err)
	}
	creds, err := writeCredentials(abs, *serial)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(abs, "manufacturer-ca.pem"), pemCert(mfr.Cert), 0o644); err != nil {
		return err
	}
	if err := r.writeConfig(map[string]string{}); err != nil {
		return err
	}
	addrs, err := r.startAgent()
	if err != nil {
		return cli.Failed("%v", err)
	}
	defer r.stopAgent()
	// The agent keeps its addresses across reboots: they go into the
	// config it is restarted with.
	if err := r.writeConfig(addrs); err != nil {
		return err
	}
	ep := endpoint.Endpoints{
		NetconfSSH: addrs["netconf_ssh"], NetconfTLS: addrs["netconf_tls"], RESTCONF: "https://" + addrs["restconf"], SNMP: addrs["snmp"],
		SSHUser: "riv", SSHPrivateKey: filepath.Join(abs, "ssh_key"), TLSClientCert: filepath.Join(abs, "client.pem"), TLSClientKey: filepath.Join(abs, "client.key"),
		TrustAnchors: filepath.Join(abs, "manufacturer-ca.pem"), RIMSigner: filepath.Join(abs, "vendor-ca.pem"), RIMs: filepath.Join(abs, "rims"),
		Serial: *serial, Attack: *atk,
		SNMPUser: "riv", SNMPAuthProtocol: "SHA-256", SNMPAuthKey: creds.snmpAuth, SNMPPrivProtocol: "AES", SNMPPrivKey: creds.snmpPriv,
	}
	if st.Local {
		ep.OwnerAnchors = filepath.Join(abs, "owner-ca.pem")
	}
	if err := ep.Write(filepath.Join(abs, "endpoints.json")); err != nil {
		return err
	}
	log.Info("ready", "netconf_ssh", ep.NetconfSSH, "netconf_tls", ep.NetconfTLS, "restconf", ep.RESTCONF, "snmp", ep.SNMP,
		"endpoints", filepath.Join(abs, "endpoints.json"))

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case <-r.agentExited:
			return cli.Failed("riv-agent serve exited: %s", lastLine(filepath.Join(abs, "agent.log")))
		case <-usr1:
			if err := r.reboot(ctx); err != nil {
				log.Error("reboot failed", "err", err)
				r.st.RebootError = err.Error()
			} else {
				r.st.RebootError = ""
			}
			r.st.Boots++
			if err := r.st.write(abs); err != nil {
				return err
			}
		}
	}
}

// rig is a running router.
type rig struct {
	dir   string
	st    *state
	img   *router.Image
	agent string
	log   *slog.Logger

	cmd         *exec.Cmd
	agentExited chan struct{}
}

// boot runs the measured boot into the (fresh or just reset) TPM and
// writes the logs where the kernel would.
func (r *rig) boot(ctx context.Context) error {
	tp, err := tpm.Open(ctx, r.st.TPM)
	if err != nil {
		return err
	}
	defer tp.Close()
	var b *router.Boot
	if r.st.BIOSLog != "" {
		raw, err := os.ReadFile(r.st.BIOSLog)
		if err != nil {
			return err
		}
		b, err = router.BootFirmwareLog(ctx, tp, raw, r.img)
		if err != nil {
			return err
		}
	} else if b, err = router.BootImage(ctx, tp, r.img); err != nil {
		return err
	}
	if err := atomicfile.Write(r.st.BIOS, b.UEFILog, 0o644); err != nil {
		return err
	}
	if err := writeIMA(r.st.IMA, b.Banks, b.Netequip.Events, false); err != nil {
		return err
	}
	if r.st.Attack == "unknown-binary" {
		if err := measure(ctx, tp, r.st, attack.UnknownBinary, attack.UnknownBinaryContent); err != nil {
			return err
		}
	}
	r.log.Info("booted", "uefi_events", len(b.UEFI.Events), "ima_entries", len(b.Netequip.Events), "bios_log", r.st.BIOSLog != "")
	for _, c := range r.st.Cards {
		if err := r.bootCard(ctx, c); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// bootCard runs a line card's measured boot: the simulated firmware and
// image, or its attack.
func (r *rig) bootCard(ctx context.Context, c card) error {
	img, err := attack.BootImage(c.Attack, router.DefaultImage(r.st.Version))
	if err != nil {
		return err
	}
	tp, err := tpm.Open(ctx, c.TPM)
	if err != nil {
		return err
	}
	defer tp.Close()
	b, err := router.BootImage(ctx, tp, img)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.BIOS, b.UEFILog, 0o644); err != nil {
		return err
	}
	if err := writeIMA(c.IMA, b.Banks, b.Netequip.Events, false); err != nil {
		return err
	}
	r.log.Info("booted line card", "card", c.Name, "attack", c.Attack)
	return nil
}

// writeIMA writes IMA entries as the kernel exposes them: the SHA-1
// template digests in binary_runtime_measurements and each other bank's
// in binary_runtime_measurements_<bank>; appending, or replacing the
// files (a boot).
func writeIMA(path string, banks []alg.ID, evs []eventlog.Event, appendTo bool) error {
	files := map[string]alg.ID{path: alg.SHA1}
	for _, b := range banks {
		if b != alg.SHA1 {
			files[path+"_"+b.String()] = b
		}
	}
	for p, b := range files {
		raw, err := eventlog.WriteIMA(evs, b)
		if err != nil {
			return err
		}
		if !appendTo {
			if err := atomicfile.Write(p, raw, 0o644); err != nil {
				return err
			}
			continue
		}
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(raw)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// measure is IMA measuring a file: the log first, then PCR 10 (the
// kernel's order: a verifier never sees a quoted entry the log lacks).
func measure(ctx context.Context, tp *tpm.TPM, st *state, name string, content []byte) error {
	banks, err := tp.Banks(ctx)
	if err != nil {
		return err
	}
	return router.MeasureIMA(ctx, tp, banks, name, alg.SHA256.Sum(content), alg.SHA256, func(e eventlog.Event) error {
		return writeIMA(st.IMA, banks, []eventlog.Event{e}, true)
	})
}

// publish has the vendor sign the RIMs of the genuine image: from
// reference boots on the in-process simulator for the simulated
// firmware, or for a captured firmware log from the boot itself (the
// vendor's reference platform is the machine the log came from).
func (r *rig) publish(ctx context.Context, genuine *router.Image) error {
	now := time.Now()
	v, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		return err
	}
	rims := filepath.Join(r.dir, "rims")
	old, _ := filepath.Glob(filepath.Join(rims, "*"))
	for _, f := range old {
		os.Remove(f)
	}
	if r.st.BIOSLog != "" {
		raw, err := os.ReadFile(r.st.BIOSLog)
		if err != nil {
			return err
		}
		ref := &router.Boot{UEFILog: raw}
		s, err := v.Sign(genuine, ref)
		if err != nil {
			return err
		}
		if err := s.Write(rims, genuine.Version); err != nil {
			return err
		}
	} else {
		sim, err := tpm.Open(ctx, "sim")
		if err != nil {
			return err
		}
		versions := []string{"1.0"}
		if genuine.Version != "1.0" {
			versions = append(versions, genuine.Version)
		}
		err = v.Publish(ctx, sim, rims, versions...)
		sim.Close()
		if err != nil {
			return err
		}
	}
	return v.WriteFiles(r.dir)
}

type credentials struct{ snmpAuth, snmpPriv string }

// writeCredentials creates the operator's side: an SSH key in the
// agent's authorized keys, a client CA and a TLS client certificate
// (CN riv), and the SNMP user's passwords. Existing ones are kept.
func writeCredentials(dir, serial string) (*credentials, error) {
	if _, err := os.Stat(filepath.Join(dir, "client.pem")); err != nil {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(key, "riv@"+serial)
		if err != nil {
			return nil, err
		}
		pub, _ := ssh.NewPublicKey(key.Public())
		opCA, err := identity.NewCA("RIV Testbed Operators", time.Now(), 10*365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		cert, err := device.ClientCert(opCA, "riv", time.Now())
		if err != nil {
			return nil, err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return nil, err
		}
		ckey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
		for name, b := range map[string][]byte{
			"ssh_key":       pem.EncodeToMemory(blk),
			"users/riv.pub": ssh.MarshalAuthorizedKey(pub),
			"client-ca.pem": pemCert(opCA.Cert),
			"client.pem":    pemCert(cert.Leaf),
			"client.key":    ckey,
			"snmp/riv.auth": []byte(randomPassword() + "\n"),
			"snmp/riv.priv": []byte(randomPassword() + "\n"),
		} {
			if err := writeFile(filepath.Join(dir, name), b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	c := &credentials{}
	for _, f := range []struct {
		name string
		to   *string
	}{{"snmp/riv.auth", &c.snmpAuth}, {"snmp/riv.priv", &c.snmpPriv}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		*f.to = strings.TrimSpace(string(b))
	}
	return c, nil
}

// writeConfig writes DIR/agent.yaml; addrs, once the agent has chosen its
// ports, pins them for the agent's restarts.
func (r *rig) writeConfig(addrs map[string]string) error {
	listen := func(k string) string {
		if a := addrs[k]; a != "" {
			return a
		}
		return "127.0.0.1:0"
	}
	d := r.dir
	cfg := fmt.Sprintf(`# riv-router %[1]s: the agent of a testbed router (riv-agent serve --config).
tpm: %[2]q
name: tpm0
manufacturer: "swtpm (libtpms)"
logs:
  bios: %[3]q
  ima: %[4]q
identity:
  idevid: {cert: %[5]q, handle: 0x81020001}
  iak: {cert: %[6]q, handle: 0x81020000}
  chain: %[7]q
`+r.localIdentity()+`listen:
  netconf_ssh: %[8]q
  netconf_tls: %[9]q
  restconf: %[10]q
  snmp: %[11]q
device:
  name: %[12]q
netconf:
  users:
    - name: riv
      authorized_keys: %[13]q
tls:
  client_ca: %[14]q
  cert_to_name:
    - map_type: common-name
nacm:
  groups:
    verifiers: [riv]
  rules:
    - {group: verifiers, operation: "*", action: permit}
snmp:
  users:
    - name: riv
      auth_protocol: SHA-256
      auth_key_file: %[15]q
      priv_protocol: AES
      priv_key_file: %[16]q
  boots_file: %[17]q
`+r.notifyConfig()+`inventory: %[18]q
`+r.lineCardsConfig(), d, r.st.TPM, r.st.BIOS, r.st.IMA, filepath.Join(d, "certs", "idevid.pem"), filepath.Join(d, "certs", "iak.pem"), r.chainFile(),
		listen("netconf_ssh"), listen("netconf_tls"), listen("restconf"), listen("snmp"), r.st.Serial,
		filepath.Join(d, "users", "riv.pub"), filepath.Join(d, "client-ca.pem"), filepath.Join(d, "snmp", "riv.auth"), filepath.Join(d, "snmp", "riv.priv"),
		filepath.Join(d, "snmp-engine-boots"), filepath.Join(d, "inventory"))
	if err := atomicfile.Write(filepath.Join(d, "agent.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	return r.st.write(d)
}

// notifyConfig is the agent's snmp.notify for --notify.
func (r *rig) notifyConfig() string {
	out := fmt.Sprintf("  notify_state_file: %q\n  watch_interval: 1s\n", filepath.Join(r.dir, "snmp-notify-state"))
	if len(r.st.Notify) == 0 {
		return out
	}
	out += "  notify:\n"
	for _, n := range r.st.Notify {
		kind, addr, _ := strings.Cut(n, " ")
		out += fmt.Sprintf("    - {address: %q, user: riv, type: %s}\n", addr, kind)
	}
	return out
}

// chainFile is the CA sent with the transport identity: the owner's for
// an LDevID, the manufacturer's for the IDevID.
func (r *rig) chainFile() string {
	if r.st.Local {
		return filepath.Join(r.dir, "owner", "ca.pem")
	}
	return filepath.Join(r.dir, "mfr", "ca.pem")
}

// localIdentity is the owner's keys in agent.yaml's identity section.
func (r *rig) localIdentity() string {
	if !r.st.Local {
		return ""
	}
	return fmt.Sprintf("  ldevid: {cert: %q, handle: 0x81020003}\n  lak: {cert: %q, handle: 0x81020002}\n  use: ldevid\n",
		filepath.Join(r.dir, "certs", "ldevid.pem"), filepath.Join(r.dir, "certs", "lak.pem"))
}

// lineCardsConfig is agent.yaml's line_cards section.
func (r *rig) lineCardsConfig() string {
	if len(r.st.Cards) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("line_cards:\n")
	for _, c := range r.st.Cards {
		fmt.Fprintf(&b, "  - name: %q\n    tpm: %q\n    logs: {bios: %q, ima: %q}\n    iak: {cert: %q, handle: 0x81020000}\n",
			c.Name, c.TPM, c.BIOS, c.IMA, filepath.Join(r.dir, c.Name, "certs", "iak.pem"))
	}
	return b.String()
}

// startAgent runs riv-agent serve and waits until it serves.
func (r *rig) startAgent() (map[string]string, error) {
	ready := filepath.Join(r.dir, "ready.json")
	os.Remove(ready)
	logf, err := os.OpenFile(filepath.Join(r.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(r.agent, "serve", "--config", filepath.Join(r.dir, "agent.yaml"), "--ready-file", ready)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's Ctrl-C away (riv-router
	// stops it); Pdeathsig stops it when riv-router dies any other way.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", r.agent, err)
	}
	r.cmd, r.agentExited = cmd, make(chan struct{})
	exited := r.agentExited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.After(time.Minute)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			var addrs map[string]string
			if err := json.Unmarshal(b, &addrs); err != nil {
				return nil, fmt.Errorf("%s: %w", ready, err)
			}
			r.st.AgentPID = cmd.Process.Pid
			return addrs, r.st.write(r.dir)
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("riv-agent serve exited: %s", lastLine(filepath.Join(r.dir, "agent.log")))
		case <-deadline:
			r.stopAgent()
			return nil, errors.New("riv-agent serve was not ready within a minute")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *rig) stopAgent() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.agentExited:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
		<-r.agentExited
	}
	r.cmd = nil
}

// reboot is a platform reset with the agent down, as on a router: no
// verifier can reach the agent while the TPM and logs are half-booted.
func (r *rig) reboot(ctx context.Context) error {
	r.log.Info("rebooting")
	r.stopAgent()
	// An orderly shutdown first, as the OS does before it resets the
	// platform: the TPM saves its clock, which stays safe.
	for _, u := range append([]card{{TPM: r.st.TPM, Ctrl: r.st.Ctrl}}, r.st.Cards...) {
		tp, err := tpm.Open(ctx, u.TPM)
		if err != nil {
			return err
		}
		err = tp.Shutdown(ctx)
		tp.Close()
		if err != nil {
			return err
		}
		if err := swtpm.Reset(u.Ctrl); err != nil {
			return err
		}
	}
	if err := r.boot(ctx); err != nil {
		return err
	}
	_, err := r.startAgent()
	return err
}

// resetLockout clears the dictionary-attack lockout a killed (not shut
// down) TPM accumulates.
func resetLockout(ctx context.Context, spec string) error {
	tp, err := tpm.Open(ctx, spec)
	if err != nil {
		return err
	}
	defer tp.Close()
	return tp.ResetLockout(ctx)
}

func shutdownTPM(spec string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tp, err := tpm.Open(ctx, spec); err == nil {
		tp.Shutdown(ctx)
		tp.Close()
	}
}

func findAgent(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "riv-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("riv-agent")
	if err != nil {
		return "", errors.New("riv-agent not found beside riv-router or on PATH (use --agent)")
	}
	return p, nil
}

// loadOrCreateCA keeps a CA in dir (ca.pem, ca.key) across runs.
func loadOrCreateCA(dir, name string) (*identity.CA, error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(certFile); err == nil {
		return provision.LoadCA(certFile, keyFile)
	}
	ca, err := identity.NewCA(name, time.Now(), 20*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(ca.Signer)
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, err
	}
	return ca, writeFile(certFile, pemCert(ca.Cert), 0o644)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, b, mode)
}

// lastLine is the last line of a log file, for an error message.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
