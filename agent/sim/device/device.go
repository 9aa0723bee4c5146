// Package device assembles a complete simulated router: a TPM, a measured
// boot of a router image, an IDevID and IAK issued by a throwaway
// manufacturer CA, the attester, and its NETCONF servers (SSH and TLS) on
// 127.0.0.1. `riv-agent dev` and the end-to-end tests run on it.
package device

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/daemon"
	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/logsrc"
	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/snmp"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

// Options configure a device.
type Options struct {
	TPM    string // "sim" (default), "swtpm:..."
	Serial string
	Image  *router.Image
	// ManufacturerCA issues the IDevID/IAK; a throwaway one when nil.
	ManufacturerCA *identity.CA
	User           string // NETCONF user (default "riv")
	Logger         *slog.Logger
	// SSHAddr, TLSAddr and RESTCONFAddr to listen on (default 127.0.0.1:0).
	SSHAddr, TLSAddr, RESTCONFAddr string
	// SNMPAddr is the UDP address of the SNMPv3 agent (default 127.0.0.1:0).
	SNMPAddr string
	// SNMPBootsFile keeps snmpEngineBoots across starts (RFC 3414 §2.2);
	// without it every start is boot 1.
	SNMPBootsFile string
	// QuotesPerSecond overrides the attester's quote rate limit.
	QuotesPerSecond float64
	// MaxQueuedPerClient overrides how many quotes one client (one
	// NETCONF user, however many sessions) may have waiting.
	MaxQueuedPerClient int
	// Certs, when set, replaces the IDevID and IAK certificates the device
	// presents (attack scenarios: a swapped or mismatched certificate).
	Certs func(ca *identity.CA, idevid, iak *x509.Certificate) (*x509.Certificate, *x509.Certificate)
	// RuntimeLog is the log the NOS measures into PCR 10: netequip_boot
	// (default) or ima, as a Linux NOS with IMA keeps it.
	RuntimeLog attester.LogType
	// Local has the owner enrol an LDevID and LAK (RFC 9683 §2.2) issued
	// by OwnerCA (a throwaway one when nil): the device then identifies
	// itself with the LDevID on SSH and TLS and lists the LAK beside its
	// IAK.
	Local   bool
	OwnerCA *identity.CA
	// Inventory, when set, is the software inventory the device serves
	// (riv-software-inventory) with the RIMs it carries.
	Inventory func() *inventory.Inventory
	// Lie, when set, rewrites every log the agent serves: a compromised
	// NOS or agent reporting what it likes (attack scenarios). The TPM
	// still holds what was really measured.
	Lie func(t attester.LogType, l *eventlog.Log) *eventlog.Log
}

// Device is a running simulated router.
type Device struct {
	TPM      *tpm.TPM
	Boot     *router.Boot
	Logs     *logsrc.Memory
	Attester *attester.Attester
	Server   *netconf.Server
	CA       *identity.CA
	IDevID   *x509.Certificate
	IAK      *x509.Certificate
	IAKKey   *tpm.Key
	// With Options.Local: the owner CA and the LDevID/LAK it issued.
	OwnerCA     *identity.CA
	LDevID, LAK *x509.Certificate
	Serial      string
	// RuntimeLog is the log type run-time measurements go to.
	RuntimeLog attester.LogType

	SSHAddr, TLSAddr string
	RESTCONFAddr     string // host:port of the HTTPS server
	SNMPAddr         string // host:port (UDP) of the SNMPv3 agent
	// SNMPUser is the authPriv user (SHA-256, AES-128) with its
	// passwords, random per device.
	SNMPUser snmp.User
	User     string
	// SSHClientKey is the user's SSH key; ClientCert the TLS client
	// certificate (issued by ClientCA) with its key.
	SSHClientKey ed25519.PrivateKey
	ClientCA     *identity.CA
	ClientCert   tls.Certificate

	daemon *daemon.Daemon
}

// Start boots and serves a device until Close.
func Start(ctx context.Context, o Options) (*Device, error) {
	if o.TPM == "" {
		o.TPM = "sim"
	}
	if o.Serial == "" {
		o.Serial = "RTR-0001"
	}
	if o.Image == nil {
		o.Image = router.DefaultImage("2.0")
	}
	if o.User == "" {
		o.User = "riv"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch o.RuntimeLog {
	case "":
		o.RuntimeLog = attester.LogNetequip
	case attester.LogNetequip, attester.LogIMA:
	default:
		return nil, fmt.Errorf("device: runtime log %q: want netequip_boot or ima", o.RuntimeLog)
	}
	tp, err := tpm.Open(ctx, o.TPM)
	if err != nil {
		return nil, err
	}
	d := &Device{TPM: tp, Logs: logsrc.NewMemory(), Serial: o.Serial, User: o.User, RuntimeLog: o.RuntimeLog}
	fail := func(err error) (*Device, error) { tp.Close(); return nil, err }
	if d.Boot, err = router.BootImage(ctx, tp, o.Image); err != nil {
		return fail(err)
	}
	now := time.Now()
	if err := d.setLogs(now); err != nil {
		return fail(err)
	}
	// Persistent, as provisioning leaves them: transient keys would not
	// survive the TPM reset of a reboot.
	iak, err := persistentKey(ctx, tp, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"}, 0x81020000)
	if err != nil {
		return fail(err)
	}
	idk, err := persistentKey(ctx, tp, tpm.KeySpec{Alg: tpm.ECCP256, Label: "IDevID"}, 0x81020001)
	if err != nil {
		return fail(err)
	}
	d.IAKKey = iak
	d.CA = o.ManufacturerCA
	if d.CA == nil {
		if d.CA, err = identity.NewCA("RIV Dev Manufacturer", now, 10*365*24*time.Hour); err != nil {
			return fail(err)
		}
	}
	dev := identity.Device{Serial: o.Serial, Model: o.Image.Model, Organization: "RIV Test Networks"}
	if d.IDevID, err = d.CA.Issue(identity.IDevID, idk.Public.Key, dev, now, 0); err != nil {
		return fail(err)
	}
	if d.IAK, err = d.CA.Issue(identity.IAK, iak.Public.Key, dev, now, 0); err != nil {
		return fail(err)
	}
	if o.Certs != nil {
		d.IDevID, d.IAK = o.Certs(d.CA, d.IDevID, d.IAK)
	}
	certs := []attester.Certificate{
		{Name: "iak", Type: attester.CertIAK, Cert: d.IAK, Key: iak, KeystoreRef: "iak"},
		{Name: "idevid", Cert: d.IDevID, KeystoreRef: "idevid"},
	}
	// The transport identity: the IDevID, or the owner's LDevID.
	idKey, idCert, idCA := idk, d.IDevID, d.CA
	if o.Local {
		lak, err := persistentKey(ctx, tp, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "LAK"}, 0x81020002)
		if err != nil {
			return fail(err)
		}
		ldk, err := persistentKey(ctx, tp, tpm.KeySpec{Alg: tpm.ECCP256, Label: "LDevID"}, 0x81020003)
		if err != nil {
			return fail(err)
		}
		if d.OwnerCA = o.OwnerCA; d.OwnerCA == nil {
			if d.OwnerCA, err = identity.NewCA("RIV Dev Owner", now, 10*365*24*time.Hour); err != nil {
				return fail(err)
			}
		}
		owned := identity.Device{Serial: o.Serial, Model: o.Image.Model, Organization: "RIV Dev Owner"}
		if d.LDevID, err = d.OwnerCA.Issue(identity.LDevID, ldk.Public.Key, owned, now, 365*24*time.Hour); err != nil {
			return fail(err)
		}
		if d.LAK, err = d.OwnerCA.Issue(identity.LAK, lak.Public.Key, owned, now, 365*24*time.Hour); err != nil {
			return fail(err)
		}
		certs = append(certs, attester.Certificate{Name: "lak", Type: attester.CertLAK, Cert: d.LAK, Key: lak, KeystoreRef: "lak"},
			attester.Certificate{Name: "ldevid", Cert: d.LDevID, KeystoreRef: "ldevid"})
		idKey, idCert, idCA = ldk, d.LDevID, d.OwnerCA
	}
	var src attester.Source = d.Logs
	if o.Lie != nil {
		src = lyingSource{d.Logs, o.Lie}
	}
	d.Attester, err = attester.New(ctx, attester.Config{
		TPM: tp, TPMName: "tpm0", Manufacturer: "RIV simulated TPM", Logs: src, BootTime: now,
		LogTypes:        []attester.LogType{attester.LogBIOS, o.RuntimeLog},
		QuotesPerSecond: o.QuotesPerSecond, QuoteBurst: int(o.QuotesPerSecond), MaxQueuedPerClient: o.MaxQueuedPerClient,
		Certificates: certs,
	})
	if err != nil {
		return fail(err)
	}
	// The IDevID certificate is listed so verifiers can fetch it; it is not
	// an attestation key, so the attester never quotes with it.
	if d.SSHClientKey, err = newEd25519(); err != nil {
		return fail(err)
	}
	sshPub, _ := ssh.NewPublicKey(d.SSHClientKey.Public())
	if d.ClientCA, err = identity.NewCA("RIV Dev Operators", now, 10*365*24*time.Hour); err != nil {
		return fail(err)
	}
	if d.ClientCert, err = ClientCert(d.ClientCA, o.User, now); err != nil {
		return fail(err)
	}
	signer, err := tp.Signer(idKey)
	if err != nil {
		return fail(err)
	}
	d.SNMPUser = snmp.User{Name: o.User, AuthPassword: snmp.Secret(randomPassword()), PrivPassword: snmp.Secret(randomPassword())}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(d.ClientCA.Cert)
	d.daemon, err = daemon.Start(daemon.Options{
		NETCONF:   netconf.Config{Attester: d.Attester, Inventory: o.Inventory},
		Identity:  tls.Certificate{Certificate: [][]byte{idCert.Raw, idCA.Cert.Raw}, PrivateKey: signer, Leaf: idCert},
		ClientCAs: clientCAs, CertToName: []netconf.CertToName{{MapType: "common-name"}},
		Access: daemon.Access{
			SSHKeys:   map[string][]ssh.PublicKey{o.User: {sshPub}},
			NACM:      netconf.NACM{Groups: map[string][]string{"verifiers": {o.User}}, Rules: []netconf.Rule{{Group: "verifiers", Operation: "*", Action: "permit"}}},
			SNMPUsers: []snmp.User{d.SNMPUser},
		},
		SNMP:   snmp.Config{Name: d.Serial, BootsFile: o.SNMPBootsFile},
		Listen: daemon.Listen{NetconfSSH: orDefault(o.SSHAddr), NetconfTLS: orDefault(o.TLSAddr), RESTCONF: orDefault(o.RESTCONFAddr), SNMP: orDefault(o.SNMPAddr)},
		Logger: o.Logger,
	})
	if err != nil {
		return fail(err)
	}
	d.Server = d.daemon.NETCONF
	d.SSHAddr, d.TLSAddr, d.RESTCONFAddr, d.SNMPAddr = d.daemon.SSHAddr, d.daemon.TLSAddr, d.daemon.RESTCONFAddr, d.daemon.SNMPAddr
	return d, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func orDefault(a string) string {
	if a == "" {
		return "127.0.0.1:0"
	}
	return a
}

func newEd25519() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

// ClientCert issues an operator's TLS client certificate with CN = user
// from ca, valid for a year from now (the testbed's operators).
func ClientCert(ca *identity.CA, user string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: user}, NotBefore: now.Add(-time.Minute),
		NotAfter: now.Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Signer)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueClientCert issues another operator certificate (CN = user) from
// the device's client CA; only d.User is in the NACM verifiers group.
func (d *Device) IssueClientCert(user string) (tls.Certificate, error) {
	return ClientCert(d.ClientCA, user, time.Now())
}

// Close stops the servers and releases the TPM.
func (d *Device) Close() error {
	d.daemon.Close()
	return d.TPM.Close()
}

// SSHPrivateKeyPEM returns the NETCONF user's SSH private key (OpenSSH PEM).
func (d *Device) SSHPrivateKeyPEM() ([]byte, error) {
	blk, err := ssh.MarshalPrivateKey(d.SSHClientKey, "riv-dev")
	if err != nil {
		return nil, err
	}
	return pemEncode(blk), nil
}

// Fingerprint of the IDevID (for verifiers pinning it).
func (d *Device) Fingerprint() string {
	h := sha256.Sum256(d.IDevID.Raw)
	return fmt.Sprintf("%x", h)
}

// MeasureFile has the NOS measure a file at run time: the served
// netequip_boot log grows by one entry, then PCR 10 is extended (a poll
// between the two finds the entry after what its quote covers, never a
// quoted entry missing).
func (d *Device) MeasureFile(ctx context.Context, path string, content []byte) error {
	return d.Boot.MeasureFile(ctx, d.TPM, path, content, func(e eventlog.Event) {
		d.Logs.Append(d.RuntimeLog, e, time.Now())
	})
}

// setLogs serves the boot's logs as the kernel would expose them: parsed
// from their binary form (the UEFI log then starts with its Spec ID
// event), the NOS measurements under the device's runtime log type.
func (d *Device) setLogs(at time.Time) error {
	for t, raw := range map[attester.LogType][]byte{attester.LogBIOS: d.Boot.UEFILog, d.RuntimeLog: d.Boot.NetequipLog} {
		if len(raw) == 0 && t != attester.LogBIOS {
			// A NOS that measured nothing yet keeps an empty log.
			d.Logs.Set(t, &eventlog.Log{Format: eventlog.FormatIMA, Banks: d.Boot.Netequip.Banks}, at)
			continue
		}
		l, err := eventlog.Parse(raw, eventlog.FormatAuto)
		if err != nil {
			return err
		}
		d.Logs.Set(t, l, at)
	}
	return nil
}

// lyingSource serves every log through a rewrite.
type lyingSource struct {
	src *logsrc.Memory
	lie func(attester.LogType, *eventlog.Log) *eventlog.Log
}

func (s lyingSource) Log(ctx context.Context, t attester.LogType) (*attester.Entries, error) {
	ent, err := s.src.Log(ctx, t)
	if err != nil {
		return nil, err
	}
	c := *ent.Log
	c.Events = slices.Clone(ent.Log.Events)
	return &attester.Entries{Log: s.lie(t, &c), Times: ent.Times}, nil
}

// Reboot resets the TPM (simulator) and boots img again: a new resetCount
// and fresh logs.
func (d *Device) Reboot(ctx context.Context, img *router.Image) error {
	if err := d.TPM.Reset(ctx); err != nil {
		return err
	}
	b, err := router.BootImage(ctx, d.TPM, img)
	if err != nil {
		return err
	}
	d.Boot = b
	return d.setLogs(time.Now())
}

func persistentKey(ctx context.Context, tp *tpm.TPM, spec tpm.KeySpec, h uint32) (*tpm.Key, error) {
	if k, err := tp.ReadPublic(ctx, h, spec); err == nil {
		return k, nil
	}
	k, err := tp.CreateKey(ctx, spec)
	if err != nil {
		return nil, err
	}
	return tp.Persist(ctx, k, h)
}

// StartT starts a device for a test and closes it when the test ends.
func StartT(t testing.TB, o Options) *Device {
	t.Helper()
	d, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
