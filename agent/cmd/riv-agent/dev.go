package main

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/internal/lockdir"
	"github.com/openriv/riv/pkg/endpoint"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

// runDev is `riv-agent dev --dir DIR`: a zero-setup device on the
// in-process TPM simulator, serving until SIGTERM/SIGINT.
const devHelp = `Boots a simulated router on the in-process TPM simulator (or swtpm) —
measured boot, vendor-signed RIMs for its image, IDevID/IAK from a
throwaway manufacturer CA — and serves it on 127.0.0.1 until SIGTERM or
SIGINT. DIR receives the keys, certificates, RIMs (also served in-band as
the software inventory, DIR/inventory) and endpoints.json that rivctl
attest and the collector read; it is locked while the device runs,
so a second dev on the same DIR is refused.`

func runDev(env *cli.Env, args []string) error {
	stderr := env.Stderr
	fs := env.Flags()
	dir := fs.String("dir", "", "directory for keys, certificates, RIMs and endpoints.json")
	serial := fs.String("serial", "RTR-0001", "device serial number")
	version := fs.String("image-version", "2.0", "router image version to boot")
	atk := fs.String("attack", "none", "boot with an attack: none, tampered-kernel, debug-mode, rollback, unknown-binary")
	sshAddr := fs.String("netconf-ssh", "127.0.0.1:0", "NETCONF over SSH listen address")
	tlsAddr := fs.String("netconf-tls", "127.0.0.1:0", "NETCONF over TLS listen address")
	rcAddr := fs.String("restconf", "127.0.0.1:0", "RESTCONF (HTTPS) listen address")
	snmpAddr := fs.String("snmp", "127.0.0.1:0", "SNMPv3 (UDP) listen address")
	tpmSpec := fs.String("tpm", "sim", "TPM: sim or swtpm:...")
	local := fs.Bool("local", false, "enrol an owner LDevID and LAK (a throwaway owner CA) and identify with the LDevID")
	runtimeLog := fs.String("runtime-log", "netequip_boot", "log of the run-time measurements: netequip_boot or ima")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("dev: unexpected argument %q", fs.Arg(0))
	}
	if *dir == "" {
		return cli.Usage("dev: --dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return cli.Usage("dev: %v", err)
	}
	unlock, err := lockdir.Lock(*dir, "riv-agent dev")
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(filepath.Join(*dir, "rims"), 0o700); err != nil {
		return cli.Usage("dev: %v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("device", *serial)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	genuine := router.DefaultImage(*version)
	img, err := attack.BootImage(*atk, genuine)
	if err != nil {
		return cli.Usage("dev: %v", err)
	}
	now := time.Now()
	mfr, err := identity.NewCA("RIV Dev Manufacturer", now, 10*365*24*time.Hour)
	if err != nil {
		return err
	}
	vend, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		return err
	}
	if err := writeRIMs(ctx, vend, genuine, *dir); err != nil {
		return err
	}
	if err := vend.WriteFiles(*dir); err != nil {
		return err
	}
	// The software inventory the NOS installs: the RIMs of the version it
	// booted, which the verifier may fetch from the device (in-band).
	invDir := filepath.Join(*dir, "inventory")
	if err := os.RemoveAll(invDir); err != nil {
		return err
	}
	if err := os.MkdirAll(invDir, 0o700); err != nil {
		return err
	}
	if err := inventory.InstallFlat(invDir, filepath.Join(*dir, "rims"), img.Version); err != nil {
		return err
	}
	inv, err := inventory.Load(invDir)
	if err != nil {
		return err
	}
	d, err := device.Start(ctx, device.Options{Inventory: func() *inventory.Inventory { return inv }, TPM: *tpmSpec, Serial: *serial, Image: img, ManufacturerCA: mfr, Logger: log, SSHAddr: *sshAddr, TLSAddr: *tlsAddr, RESTCONFAddr: *rcAddr, SNMPAddr: *snmpAddr,
		Local: *local, RuntimeLog: attester.LogType(*runtimeLog), SNMPBootsFile: filepath.Join(*dir, "snmp-engine-boots")})
	if err != nil {
		return err
	}
	defer d.Close()
	if *atk == "unknown-binary" {
		if err := d.MeasureFile(ctx, attack.UnknownBinary, attack.UnknownBinaryContent); err != nil {
			return err
		}
	}
	files := map[string][]byte{"manufacturer-ca.pem": pemCert(mfr.Cert)}
	if d.OwnerCA != nil {
		files["owner-ca.pem"] = pemCert(d.OwnerCA.Cert)
	}
	key, err := d.SSHPrivateKeyPEM()
	if err != nil {
		return err
	}
	files["ssh_key"] = key
	files["client.pem"] = pemCert(d.ClientCert.Leaf)
	ck, err := x509.MarshalPKCS8PrivateKey(d.ClientCert.PrivateKey)
	if err != nil {
		return err
	}
	files["client.key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ck})
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(*dir, n), b, 0o600); err != nil {
			return err
		}
	}
	abs, _ := filepath.Abs(*dir)
	ep := endpoint.Endpoints{
		NetconfSSH: d.SSHAddr, NetconfTLS: d.TLSAddr, RESTCONF: "https://" + d.RESTCONFAddr, SSHUser: d.User,
		SSHPrivateKey: filepath.Join(abs, "ssh_key"), TLSClientCert: filepath.Join(abs, "client.pem"), TLSClientKey: filepath.Join(abs, "client.key"),
		TrustAnchors: filepath.Join(abs, "manufacturer-ca.pem"), RIMSigner: filepath.Join(abs, "vendor-ca.pem"), RIMs: filepath.Join(abs, "rims"),
		Serial: *serial, Attack: *atk,
		SNMP: d.SNMPAddr, SNMPUser: d.SNMPUser.Name, SNMPAuthProtocol: "SHA-256", SNMPAuthKey: string(d.SNMPUser.AuthPassword),
		SNMPPrivProtocol: "AES", SNMPPrivKey: string(d.SNMPUser.PrivPassword),
	}
	if d.OwnerCA != nil {
		ep.OwnerAnchors = filepath.Join(abs, "owner-ca.pem")
	}
	if err := ep.Write(filepath.Join(*dir, "endpoints.json")); err != nil {
		return err
	}
	log.Info("ready", "netconf_ssh", d.SSHAddr, "netconf_tls", d.TLSAddr, "restconf", ep.RESTCONF, "snmp", ep.SNMP, "endpoints", filepath.Join(abs, "endpoints.json"))
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// writeRIMs has the vendor sign the genuine images (1.0, and the
// requested version superseding it) from reference boots on the simulator,
// before the device itself starts on it (a real vendor uses its lab).
func writeRIMs(ctx context.Context, vend *vendor.Vendor, genuine *router.Image, dir string) error {
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		return err
	}
	defer tp.Close()
	versions := []string{"1.0"}
	if genuine.Version != "1.0" {
		versions = append(versions, genuine.Version)
	}
	return vend.Publish(ctx, tp, filepath.Join(dir, "rims"), versions...)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
