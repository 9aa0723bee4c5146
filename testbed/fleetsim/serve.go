package fleetsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	agentnc "github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/pkg/identity"
)

// MaxDevices bounds one simulator (each device holds a listener, its
// logs and keys: about 30 KB).
const MaxDevices = 100_000

// ServeOptions configure a served fleet.
type ServeOptions struct {
	Devices int
	// Dir receives the collector's side: anchors, RIMs, the client
	// certificate, devices.yaml and, when every device listens,
	// fleetsim.json.
	Dir string
	// Base is the first device's address; the others follow it (default
	// 127.1.0.1). Each device has an address of its own, so that a
	// collector's connections are not bounded by one address's ports.
	Base netip.Addr
	Port int // default 6513 (NETCONF over TLS)
	// Tamper is how many devices (the last ones) run an unsigned binary.
	Tamper int
}

// Info is DIR/fleetsim.json, written when every device listens.
type Info struct {
	Devices        int    `json:"devices"`
	First          string `json:"first"` // host:port of device 0
	Last           string `json:"last"`
	ManufacturerCA string `json:"manufacturer_ca"`
	RIMSignerCA    string `json:"rim_signer_ca"`
	RIMs           string `json:"rims"`
	ClientCert     string `json:"client_cert"`
	ClientKey      string `json:"client_key"`
	// DevicesYAML is the collector's inventory of the fleet (the items
	// of its devices: list).
	DevicesYAML string `json:"devices_yaml"`
}

// Served is a fleet being served.
type Served struct {
	Devices []*Device
	Addrs   []string
	Info    Info
	wg      sync.WaitGroup
	lns     []net.Listener
}

// Serve boots o.Devices devices and serves each over NETCONF-TLS on its
// own address until ctx ends, and writes the collector's side into o.Dir.
func (f *Fleet) Serve(ctx context.Context, o ServeOptions) (*Served, error) {
	if o.Devices < 1 || o.Devices > MaxDevices {
		return nil, fmt.Errorf("fleetsim: %d devices: want 1 to %d", o.Devices, MaxDevices)
	}
	if o.Tamper < 0 || o.Tamper > o.Devices {
		return nil, fmt.Errorf("fleetsim: %d tampered devices of %d", o.Tamper, o.Devices)
	}
	if !o.Base.IsValid() {
		o.Base = netip.MustParseAddr("127.1.0.1")
	}
	if !o.Base.Is4() || !o.Base.IsLoopback() {
		return nil, fmt.Errorf("fleetsim: base address %v is not in 127.0.0.0/8", o.Base)
	}
	if o.Port == 0 {
		o.Port = 6513
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	info := Info{Devices: o.Devices, ManufacturerCA: filepath.Join(o.Dir, "manufacturer-ca.pem"), RIMSignerCA: filepath.Join(o.Dir, "vendor-ca.pem"),
		RIMs: filepath.Join(o.Dir, "rims"), ClientCert: filepath.Join(o.Dir, "client.pem"), ClientKey: filepath.Join(o.Dir, "client-key.pem"),
		DevicesYAML: filepath.Join(o.Dir, "devices.yaml")}
	if err := f.WriteAnchor(info.ManufacturerCA); err != nil {
		return nil, err
	}
	if err := f.WriteRIMs(info.RIMs, info.RIMSignerCA); err != nil {
		return nil, err
	}
	clientCAs, err := writeClient(info.ClientCert, info.ClientKey)
	if err != nil {
		return nil, err
	}
	s := &Served{Info: info}
	var inv strings.Builder
	addr := o.Base
	for i := range o.Devices {
		if !addr.IsLoopback() {
			s.Close()
			return nil, fmt.Errorf("fleetsim: %d devices from %v leave 127.0.0.0/8", o.Devices, o.Base)
		}
		serial := fmt.Sprintf("SIM-%06d", i)
		d, err := f.Device(ctx, serial)
		if err != nil {
			s.Close()
			return nil, err
		}
		if i >= o.Devices-o.Tamper {
			if err := d.Tamper(ctx); err != nil {
				s.Close()
				return nil, err
			}
		}
		hp := net.JoinHostPort(addr.String(), fmt.Sprint(o.Port))
		ln, err := net.Listen("tcp", hp)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("fleetsim: device %d: %w", i, err)
		}
		s.Devices, s.Addrs, s.lns = append(s.Devices, d), append(s.Addrs, hp), append(s.lns, ln)
		s.wg.Go(func() {
			d.Server.ServeTLS(ctx, ln, agentnc.TLSConfig{Certificate: d.Identity, ClientCAs: clientCAs,
				CertToName: []agentnc.CertToName{{MapType: "common-name"}}})
		})
		fmt.Fprintf(&inv, "- {name: %s, address: %q, transport: tls, client_cert: %s, client_key: {file: %s}, serial: %s}\n",
			strings.ToLower(serial), hp, info.ClientCert, info.ClientKey, serial)
		addr = addr.Next()
	}
	s.Info.First, s.Info.Last = s.Addrs[0], s.Addrs[len(s.Addrs)-1]
	if err := atomicfile.Write(info.DevicesYAML, []byte(inv.String()), 0o644); err != nil {
		s.Close()
		return nil, err
	}
	b, _ := json.MarshalIndent(s.Info, "", "  ")
	if err := atomicfile.Write(filepath.Join(o.Dir, "fleetsim.json"), append(b, '\n'), 0o644); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Run is the fleet's life until ctx ends: every every, each device's NOS
// measures grow more files; every rebootEvery (0: never) the next device
// in turn reboots.
func (s *Served) Run(ctx context.Context, every time.Duration, grow int, rebootEvery time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var reboot <-chan time.Time
	if rebootEvery > 0 {
		t := time.NewTicker(rebootEvery)
		defer t.Stop()
		reboot = t.C
	}
	next := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if grow == 0 {
				continue
			}
			for _, d := range s.Devices {
				if err := d.Measure(ctx, grow); err != nil {
					return err
				}
			}
		case <-reboot:
			if err := s.Devices[next%len(s.Devices)].Reboot(ctx); err != nil {
				return err
			}
			next++
		}
	}
}

// Close stops listening; the servers end with the context given to
// Serve.
func (s *Served) Close() error {
	var errs []error
	for _, ln := range s.lns {
		errs = append(errs, ln.Close())
	}
	return errors.Join(errs...)
}

// Wait waits for the servers to end.
func (s *Served) Wait() { s.wg.Wait() }

// writeClient makes the collector's NETCONF client certificate (CN "riv",
// the user the devices permit) and returns the CA the devices verify it
// against.
func writeClient(certFile, keyFile string) (*x509.CertPool, error) {
	ca, err := identity.NewCA("RIV Fleetsim Operators", time.Now(), 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	tc, err := device.ClientCert(ca, User, time.Now())
	if err != nil {
		return nil, err
	}
	key, ok := tc.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("fleetsim: client key is not ECDSA")
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.Certificate[0]}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool, nil
}
