// Package fleetsim simulates a fleet of routers in one process, for load
// on the collector: each device has its own IDevID and IAK (issued by the
// fleet's manufacturer CA), a measured boot of the fleet's image into a
// software TPM (agent/sim/softtpm), the agent's attester and NETCONF
// server, and logs that grow as its NOS measures files. Quotes are signed
// in software in the exact TPM structures.
//
// It is clearly a simulator: the software TPM protects nothing. The real
// TPM paths (the in-process simulator, swtpm) are what the rest of the
// testbed runs on; this package exists so that tens of thousands of
// devices fit on the collector's machine. riv-fleetsim serves them.
package fleetsim

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/logsrc"
	agentnc "github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/softtpm"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

// User is the NETCONF user every simulated device permits the
// attestation RPCs to.
const User = "riv"

// Options shape a fleet.
type Options struct {
	// Files is how many NOS files the image has beyond the default
	// image's: each is measured at boot into the netequip_boot log, and
	// listed in the image's signed RIMs.
	Files int
	// Firmware, when set, is a captured TCG firmware log booted in place
	// of the simulated firmware (router.BootFirmwareLog): the devices'
	// TPMs then have the log's banks.
	Firmware []byte
	// Banks are the TPMs' PCR banks without Firmware (default SHA-256).
	Banks []alg.ID
}

// Fleet is what the simulated routers share: the manufacturer CA, the
// vendor that signs the image's RIMs, and the image.
type Fleet struct {
	CA     *identity.CA
	Vendor *vendor.Vendor
	Image  *router.Image
	RIMs   *vendor.RIMs
	// Runtime are the image's files a NOS measures again at run time
	// (Device.Measure), in turn: all signed.
	Runtime []router.File

	opts  Options
	banks []alg.ID
	// The logs every device boots into, parsed once and shared: the
	// entries are never written after a boot, and a device's later
	// measurements go to its own slice.
	bootOnce sync.Once
	boot     *router.Boot
	bootErr  error
}

// New creates a fleet: a manufacturer, a vendor, the image and its RIMs
// signed from a reference boot.
func New(opts Options) (*Fleet, error) {
	now := time.Now()
	ca, err := identity.NewCA("RIV Fleetsim Manufacturer", now, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	v, err := vendor.New("RIV Test Networks", "https://riv.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(10*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	img := router.DefaultImage("2.0")
	if opts.Files > 0 {
		p := router.Package{Name: "fleetsim-files", Version: "2.0"}
		for i := range opts.Files {
			path := fmt.Sprintf("/usr/lib/riv/plugins/plugin-%05d.so", i)
			p.Files = append(p.Files, router.File{Path: path, Content: []byte(path)})
		}
		img.Packages = append(img.Packages, p)
	}
	banks := opts.Banks
	if opts.Firmware != nil {
		l, err := eventlog.ParseTCG(opts.Firmware)
		if err != nil {
			return nil, fmt.Errorf("firmware log: %w", err)
		}
		banks = l.Banks
	}
	if len(banks) == 0 {
		banks = []alg.ID{alg.SHA256}
	}
	f := &Fleet{CA: ca, Vendor: v, Image: img, opts: opts, banks: banks}
	for _, p := range img.Packages {
		f.Runtime = append(f.Runtime, p.Files...)
	}
	ref, err := f.referenceBoot()
	if err != nil {
		return nil, err
	}
	if f.RIMs, err = v.Sign(img, ref); err != nil {
		return nil, err
	}
	return f, nil
}

// referenceBoot boots the image into a fresh software TPM: the boot
// every device starts from (and the vendor's reference).
func (f *Fleet) referenceBoot() (*router.Boot, error) {
	f.bootOnce.Do(func() {
		st, err := softtpm.New(f.banks...)
		if err != nil {
			f.bootErr = err
			return
		}
		f.boot, f.bootErr = f.bootInto(context.Background(), st)
	})
	return f.boot, f.bootErr
}

func (f *Fleet) bootInto(ctx context.Context, st *softtpm.TPM) (*router.Boot, error) {
	if f.opts.Firmware != nil {
		return router.BootFirmwareLog(ctx, st, f.opts.Firmware, f.Image)
	}
	return router.BootImage(ctx, st, f.Image)
}

// WriteRIMs writes the vendor's signed RIMs of the image into dir, as a
// collector's rims.dirs holds them, and the vendor's anchor beside it
// (the file anchorFile: a collector's rims.anchors).
func (f *Fleet) WriteRIMs(dir, anchorFile string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := f.RIMs.Write(dir, f.Image.Version); err != nil {
		return err
	}
	return os.WriteFile(anchorFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Vendor.CA.Raw}), 0o644)
}

// WriteAnchor writes the manufacturer CA (PEM) to file: a collector's
// trust anchor for the devices' IDevIDs and IAKs.
func (f *Fleet) WriteAnchor(file string) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.CA.Cert.Raw}), 0o644)
}

// Anchors are the manufacturer CA, for the collector's trust anchors.
func (f *Fleet) Anchors() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.CA.Cert)
	return p
}

// Device is one simulated router.
type Device struct {
	Serial   string
	TPM      *softtpm.TPM
	Logs     *logsrc.Memory
	Attester *attester.Attester
	Server   *agentnc.Server
	IDevID   *x509.Certificate
	IAK      *x509.Certificate
	// Identity is the IDevID with its key, for the device's TLS server.
	Identity tls.Certificate

	fleet *Fleet
	mu    sync.Mutex
	next  int // the next of fleet.Runtime to measure
}

// Device boots a new device with serial.
func (f *Fleet) Device(ctx context.Context, serial string) (*Device, error) {
	st, err := softtpm.New(f.banks...)
	if err != nil {
		return nil, err
	}
	d := &Device{Serial: serial, TPM: st, Logs: logsrc.NewMemory(), fleet: f}
	if err := d.boot(ctx); err != nil {
		return nil, err
	}
	iak, _, err := st.CreateKey(tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		return nil, err
	}
	idk, idSigner, err := st.CreateKey(tpm.KeySpec{Alg: tpm.ECCP256, Label: "IDevID"})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	dev := identity.Device{Serial: serial, Model: f.Image.Model, Organization: "RIV Test Networks"}
	if d.IDevID, err = f.CA.Issue(identity.IDevID, idk.Public.Key, dev, now, 0); err != nil {
		return nil, err
	}
	if d.IAK, err = f.CA.Issue(identity.IAK, iak.Public.Key, dev, now, 0); err != nil {
		return nil, err
	}
	d.Identity = tls.Certificate{Certificate: [][]byte{d.IDevID.Raw, f.CA.Cert.Raw}, PrivateKey: idSigner, Leaf: d.IDevID}
	d.Attester, err = attester.New(ctx, attester.Config{
		TPM: st, TPMName: "tpm0", Manufacturer: "RIV fleetsim software TPM", Logs: d.Logs, BootTime: now,
		LogTypes: []attester.LogType{attester.LogBIOS, attester.LogNetequip},
		// A collector polls each device once per interval; these bound
		// nothing a test relies on.
		QuotesPerSecond: 1000, QuoteBurst: 1000, MaxQueuedPerClient: 16,
		Certificates: []attester.Certificate{
			{Name: "iak", Type: attester.CertIAK, Cert: d.IAK, Key: iak, KeystoreRef: "iak"},
			{Name: "idevid", Cert: d.IDevID, KeystoreRef: "idevid"},
		},
	})
	if err != nil {
		return nil, err
	}
	d.Server, err = agentnc.New(agentnc.Config{Attester: d.Attester,
		NACM: agentnc.NACM{Groups: map[string][]string{"verifiers": {User}}, Rules: []agentnc.Rule{{Group: "verifiers", Operation: "*", Action: "permit"}}}})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// IdentityKey is the key the device's transport is authenticated with
// (the IDevID's), which the verifier binds to its certificate.
func (d *Device) IdentityKey() crypto.PublicKey { return d.IDevID.PublicKey }

// boot replays the fleet's boot into the device's TPM (as the boot
// measured it, so its PCRs are the reference boot's) and sets its logs.
func (d *Device) boot(ctx context.Context) error {
	ref, err := d.fleet.referenceBoot()
	if err != nil {
		return err
	}
	for _, l := range []*eventlog.Log{ref.UEFI, ref.Netequip} {
		for i := range l.Events {
			e := &l.Events[i]
			if l == ref.UEFI && eventlog.EventType(e.Type) == eventlog.EvNoAction {
				continue
			}
			ds := map[alg.ID][]byte{}
			for _, b := range d.fleet.banks {
				if v := e.Digest(b); v != nil {
					ds[b] = v
				}
			}
			if err := d.TPM.Extend(ctx, e.PCR, ds); err != nil {
				return fmt.Errorf("boot: event %d: %w", e.Seq, err)
			}
		}
	}
	now := time.Now()
	d.Logs.Set(attester.LogBIOS, ref.UEFI, now)
	d.Logs.Set(attester.LogNetequip, ref.Netequip, now)
	return nil
}

// Measure has the NOS measure the next n of the image's files again (as
// it runs them): PCR 10 and the netequip_boot log grow by n entries.
func (d *Device) Measure(ctx context.Context, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	rt := d.fleet.Runtime
	for range n {
		f := rt[d.next%len(rt)]
		d.next++
		if err := d.measure(ctx, f.Path, f.Content); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) measure(ctx context.Context, path string, content []byte) error {
	return router.MeasureIMA(ctx, d.TPM, d.fleet.banks, path, alg.SHA256.Sum(content), alg.SHA256, func(e eventlog.Event) error {
		d.Logs.Append(attester.LogNetequip, e, time.Now())
		return nil
	})
}

// Tamper has the NOS run a binary no RIM lists.
func (d *Device) Tamper(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.measure(ctx, "/tmp/.x/implant", []byte("not signed by anyone "+d.Serial))
}

// Reboot resets the TPM and boots the image again.
func (d *Device) Reboot(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.TPM.Reset()
	d.next = 0
	return d.boot(ctx)
}

// Banks are the devices' PCR banks.
func (f *Fleet) Banks() []alg.ID { return slices.Clone(f.banks) }

// Index loads the RIMs as a collector does (verified against the
// vendor's anchor), for verifiers built in-process.
func (f *Fleet) Index(dir string) (*rim.Index, error) {
	if err := f.WriteRIMs(dir, filepath.Join(dir, "..", filepath.Base(dir)+"-vendor-ca.pem")); err != nil {
		return nil, err
	}
	idx, _, err := verifier.LoadRIMs(dir, f.Vendor.Roots())
	return idx, err
}
