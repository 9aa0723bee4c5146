package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/openriv/riv/collector/api"
	snmpc "github.com/openriv/riv/collector/client/snmp"
	"github.com/openriv/riv/collector/config"
	"github.com/openriv/riv/collector/dashboard"
	"github.com/openriv/riv/collector/lease"
	"github.com/openriv/riv/collector/metrics"
	"github.com/openriv/riv/collector/notify"
	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/internal/lockdir"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/endpoint"
	"github.com/openriv/riv/pkg/rim"
)

const serveHelp = `Runs the collector of a configuration file (see deploy/riv-collector.yaml):
the devices of its inventory polled at their intervals, each appraised
against its policy set with the trust anchors and RIMs of the file (and
the RIMs devices carry, and those uploaded), every result kept in
DATA_DIR/riv.db with the verifier's state (a restart resumes incremental
polls), signed EARs, webhooks, and the API over HTTPS (TLS 1.3) with
bearer tokens or client certificates. SIGHUP reloads the file: devices
added, removed or changed are started, stopped or restarted; the others
keep polling. A file that does not load is reported and the running
configuration kept.`

func runServe(env *cli.Env, args []string) error {
	cfg, file, err := loadConfig(env, args, "serve")
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return cli.Usage("serve: %v", err)
	}
	unlock, err := lockdir.Lock(cfg.DataDir, "riv-collector serve")
	if err != nil {
		return err
	}
	defer unlock()
	key, err := earKey(cfg.EARKey)
	if err != nil {
		return cli.Usage("serve: ear_key: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sopt := store.Options{Sync: store.Sync(cfg.Store.Sync), DurableWithin: cfg.Store.DurableWithin}
	var db *store.Store
	if pg := cfg.Store.Postgres.Value(); pg != "" {
		db, err = store.OpenPostgres(ctx, pg, sopt)
	} else {
		db, err = store.OpenWith(ctx, filepath.Join(cfg.DataDir, "riv.db"), sopt)
	}
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	defer db.Close()

	svc := &service{key: key, db: db, log: log, cache: tls.NewLRUClientSessionCache(max(64, 2*len(cfg.Devices))),
		interval: cfg.Poll.Interval, keep: cfg.Poll.KeepSessions}
	if err := svc.configure(cfg); err != nil {
		return cli.Usage("serve: %v", err)
	}
	added, err := db.Devices(ctx)
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	// What the scheduler restores is read while the devices are built
	// (the store is not used again before the scheduler runs: a SQLite
	// store's one connection would wait for the reads).
	pre := scheduler.Preload(ctx, db)
	devices, err := svc.inventory(cfg, added)
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	var sch *scheduler.Scheduler
	m := metrics.New(func() metrics.Fleet { return sch })
	so := scheduler.Options{Interval: cfg.Poll.Interval, MaxInFlight: cfg.Poll.MaxInFlight, PollTimeout: cfg.Poll.Timeout,
		Store: db, Logger: log, Observer: m, Collector: cfg.Store.CollectorID, Preloaded: pre}
	var leases *lease.Manager
	if db.Postgres() {
		// Shared with other collectors: each polls the devices it leases.
		leases = lease.New(lease.Options{Store: db, ID: cfg.Store.CollectorID, TTL: cfg.Store.LeaseTTL, Logger: log,
			Devices: func() []string { return sch.Names() }, Acquired: func(d string, due time.Time) { sch.Wake(d, due) }})
		so.Leases = leases
	}
	var hooks []*notify.Webhook
	for _, w := range cfg.Webhooks {
		hooks = append(hooks, notify.New(w.URL, []byte(w.Secret.Value()), db, log))
	}
	if len(hooks) > 0 {
		so.Outbox = func(ctx context.Context, evs []scheduler.Event) {
			for _, h := range hooks {
				h.Keep(ctx, evs)
			}
		}
	}
	// Loading the configuration and the store's results and states (the
	// YAML and the rows, decoded) leaves garbage the size of the fleet:
	// back to the system once loaded, not held as the heap's high-water
	// mark (in the background: the API serves meanwhile).
	so.Loaded = func() { go debug.FreeOSMemory() }
	sch = scheduler.New(so, devices)
	svc.sch = sch
	if cfg.Poll.SNMPTraps != "" {
		tr, err := snmpc.ListenTraps(cfg.Poll.SNMPTraps, svc.onTrap(ctx))
		if err != nil {
			return cli.Usage("serve: poll.snmp_traps: %v", err)
		}
		defer tr.Close()
		svc.mu.Lock()
		svc.traps, svc.trapping = tr, map[string]bool{}
		svc.mu.Unlock()
	}

	srv := &api.Server{Fleet: sch, AdminToken: cfg.Tokens.Admin.Value(), ReadToken: cfg.Tokens.Readonly.Value(), EARKey: &key.PublicKey,
		Metrics: m.Handler(), NewDevice: svc.apiDevice, ClientCerts: cfg.TLS.ClientCA != "", Dashboard: dashboard.Handler()}
	if *cfg.RIMs.Uploads {
		srv.AddRIM = svc.upload
	}
	tcfg, err := serverTLS(cfg)
	if err != nil {
		return cli.Usage("serve: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return cli.Usage("serve: listen: %v", err)
	}
	hs := &http.Server{Handler: srv.Handler(), TLSConfig: tcfg, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 3 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, tcfg)) }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sch.Run(ctx) }()
	go func() { defer wg.Done(); svc.retain(ctx, cfg.Retention) }()
	if leases != nil {
		// The first round before the first polls: a restarted collector
		// takes its devices back at once.
		rctx, cancel := context.WithTimeout(ctx, cfg.Store.LeaseTTL/3)
		if err := leases.Round(rctx); err != nil {
			log.Warn("leases", "err", err)
		}
		cancel()
		wg.Add(2)
		go func() { defer wg.Done(); leases.Run(ctx) }()
		go func() { defer wg.Done(); svc.shareDevices(ctx, cfg.Store.LeaseTTL/3) }()
	}
	for _, h := range hooks {
		wg.Add(1)
		go func() { defer wg.Done(); h.Run(ctx) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	url := "https://" + ln.Addr().String()
	// Where it serves, for scripts and tests (the tokens stay in their
	// files).
	b, _ := json.MarshalIndent(map[string]string{"url": url}, "", "  ")
	if err := atomicfile.Write(filepath.Join(cfg.DataDir, "collector.json"), append(b, '\n'), 0o600); err != nil {
		return cli.Usage("serve: %v", err)
	}
	log.Info("serving", "url", url, "devices", len(devices), "config", file, "collector", cfg.Store.CollectorID, "postgres", db.Postgres())
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			hs.Shutdown(sctx)
			cancel()
			wg.Wait()
			if leases != nil {
				leases.Leave()
			}
			log.Info("stopped")
			return nil
		case err := <-errc:
			return cli.Usage("serve: API: %v", err)
		case <-hup:
			svc.reload(ctx, file)
		}
	}
}

// serverTLS is the API's TLS: 1.3 only, its certificate, and with a
// client CA client certificates verified when given.
func serverTLS(cfg *config.Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	t := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	if cfg.TLS.ClientCA != "" {
		pool, err := config.LoadPool(cfg.TLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		t.ClientCAs, t.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return t, nil
}

// service is what serve runs: a verifier per policy set, and the
// inventory they poll.
type service struct {
	key   *ecdsa.PrivateKey
	db    *store.Store
	log   *slog.Logger
	sch   *scheduler.Scheduler
	cache tls.ClientSessionCache // shared by every device's TLS sessions
	// interval is the default poll interval; a device polled less often
	// than keep reconnects each poll (verifier.Target.Resume). Under mu.
	interval, keep time.Duration

	clients map[[2]string]clientIdentity // by certificate file and key, since the last (re)load (clientTLS); under mu

	mu        sync.Mutex
	trust     [32]byte // digest of the trust and policy sections the verifiers were built from
	verifiers map[string]*verifier.Verifier
	specs     map[string][32]byte // each configured device as built (a digest), to see what a reload changed

	traps    *snmpc.Traps    // nil without poll.snmp_traps
	trapping map[string]bool // devices whose trap-triggered poll runs
}

// snmpSession registers an SNMP device's engine with the trap receiver.
func (s *service) snmpSession(device string, engineID []byte, c snmpc.Credentials) {
	s.mu.Lock()
	tr := s.traps
	s.mu.Unlock()
	if tr == nil {
		return
	}
	if err := tr.Add(device, engineID, c); err != nil {
		s.log.Warn("the device's traps cannot be received", "device", device, "err", err)
	}
}

// onTrap polls the device that sent a notification at once (one such
// poll at a time per device: a burst of traps is one poll).
func (s *service) onTrap(ctx context.Context) func(snmpc.Notification) {
	return func(n snmpc.Notification) {
		s.mu.Lock()
		if s.trapping[n.Device] {
			s.mu.Unlock()
			return
		}
		s.trapping[n.Device] = true
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.trapping, n.Device)
			s.mu.Unlock()
		}()
		s.log.Info("trap: attesting the device now", "device", n.Device, "notification", n.OID.String())
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if _, err := s.sch.Attest(actx, n.Device); err != nil {
			s.log.Warn("trap: the attestation it asked for failed", "device", n.Device, "err", err)
		}
	}
}

// configure builds the verifiers of cfg's policy sets, with the RIMs of
// its directories and those uploaded before.
func (s *service) configure(cfg *config.Config) error {
	anchors, err := verifier.LoadPools(cfg.Trust.Manufacturers)
	if err != nil {
		return err
	}
	var owner, rimAnchors *x509.CertPool
	if len(cfg.Trust.Owner) > 0 {
		if owner, err = verifier.LoadPools(cfg.Trust.Owner); err != nil {
			return err
		}
	}
	idx := rim.NewIndex()
	if len(cfg.Trust.RIMSigners) > 0 {
		if rimAnchors, err = verifier.LoadPools(cfg.Trust.RIMSigners); err != nil {
			return err
		}
		if len(cfg.RIMs.Dirs) > 0 {
			if idx, _, err = verifier.LoadRIMDirs(cfg.RIMs.Dirs, rimAnchors); err != nil {
				return fmt.Errorf("rims: %w", err)
			}
		}
	}
	inband := rimAnchors
	if !*cfg.RIMs.InBand {
		inband = nil
	}
	vs := map[string]*verifier.Verifier{}
	for name, ps := range cfg.Policies {
		var banks []alg.ID
		for _, b := range ps.Banks {
			id, _ := config.ParseBank(b) // validated
			banks = append(banks, id)
		}
		v := verifier.New(verifier.Policy{Name: name, Anchors: anchors, OwnerAnchors: owner, RIMs: idx, RIMAnchors: inband,
			Banks: banks, MultiBank: ps.MultiBank, RequireSecureBoot: ps.RequireSecureBoot, NoUnknownFiles: ps.NoUnknownFiles}, s.key)
		v.Reuse = true
		v.OnSNMP = s.snmpSession
		vs[name] = v
	}
	ups, err := s.db.RIMs(context.Background())
	if err != nil {
		return err
	}
	for _, u := range ups {
		for _, v := range vs {
			if _, err := v.AddRIM(u.Name, u.Raw); err != nil {
				s.log.Warn("an uploaded RIM no longer verifies", "rim", u.Name, "err", err)
			}
		}
	}
	s.mu.Lock()
	old := s.verifiers
	s.verifiers, s.trust = vs, trustDigest(cfg)
	s.mu.Unlock()
	for _, v := range old {
		v.Close()
	}
	return nil
}

// trustDigest identifies what the verifiers are built from.
func trustDigest(cfg *config.Config) [32]byte {
	b, _ := json.Marshal([]any{cfg.Trust, cfg.RIMs, cfg.Policies})
	h := sha256.New()
	h.Write(b)
	for _, files := range [][]string{cfg.Trust.Manufacturers, cfg.Trust.Owner, cfg.Trust.RIMSigners} {
		for _, f := range files {
			c, _ := os.ReadFile(f)
			h.Write(c)
		}
	}
	return [32]byte(h.Sum(nil))
}

// inventory builds the devices of cfg and those added through the API
// before.
func (s *service) inventory(cfg *config.Config, stored map[string][]byte) ([]scheduler.Device, error) {
	var out []scheduler.Device
	specs := map[string][32]byte{}
	for i := range cfg.Devices {
		d, spec, err := s.configured(&cfg.Devices[i])
		if err != nil {
			return nil, fmt.Errorf("devices[%d] (%s): %w", i, cfg.Devices[i].Name, err)
		}
		out = append(out, d)
		specs[d.Name] = spec
	}
	for name, spec := range stored {
		if _, dup := specs[name]; dup {
			s.log.Warn("a device added through the API is now in the configuration: the configuration's is polled", "device", name)
			continue
		}
		d, err := s.storedDevice(name, spec)
		if err != nil {
			s.log.Error("a device added through the API cannot be polled", "device", name, "err", err)
			continue
		}
		out = append(out, d)
	}
	s.mu.Lock()
	s.specs = specs
	s.mu.Unlock()
	return out, nil
}

// configured builds a device of the configuration, and returns what it
// was built from.
func (s *service) configured(cd *config.Device) (scheduler.Device, [32]byte, error) {
	s.mu.Lock()
	v := s.verifiers[cd.Policy]
	s.mu.Unlock()
	var t verifier.Target
	var spec []byte
	if cd.Endpoints != "" {
		ep, err := endpoint.Read(cd.Endpoints)
		if err != nil {
			return scheduler.Device{}, [32]byte{}, err
		}
		if t, err = endpointsTarget(ep, cd.Transport, s.cache); err != nil {
			return scheduler.Device{}, [32]byte{}, err
		}
		spec, _ = json.Marshal(ep)
	} else {
		switch cd.Transport {
		case "snmp":
			t = verifier.Target{SNMP: cd.Address, SNMPUser: snmpc.Credentials{User: cd.SNMPUser, AuthProtocol: "SHA-256", AuthKey: cd.SNMPAuthKey.Value(),
				PrivProtocol: "AES", PrivKey: cd.SNMPPrivKey.Value()}}
		case "ssh":
			k, err := verifier.ParseSSHKey([]byte(cd.SSHKey.Value()))
			if err != nil {
				return scheduler.Device{}, [32]byte{}, fmt.Errorf("ssh_key: %w", err)
			}
			t = verifier.Target{SSHAddr: cd.Address, SSHUser: cd.SSHUser, SSHKey: k}
		default:
			pem, cfg, err := s.clientTLS(cd.ClientCert, cd.ClientKey.Value())
			if err != nil {
				return scheduler.Device{}, [32]byte{}, err
			}
			t = verifier.Target{TLS: cfg}
			if cd.Transport == "restconf" {
				t.RESTCONF = "https://" + cd.Address
			} else {
				t.TLSAddr = cd.Address
			}
			spec = append(spec, pem...)
		}
		h := sha256.Sum256([]byte(cd.ClientKey.Value() + "\x00" + cd.SSHKey.Value() + "\x00" + cd.SNMPAuthKey.Value() + "\x00" + cd.SNMPPrivKey.Value()))
		spec = append(spec, h[:]...)
	}
	t.Name, t.Serial, t.Model = cd.Name, cd.Serial, cd.Model
	// What it was built from, as a digest: kept for every device until
	// the next reload (the description itself, with the certificate's
	// PEM, was 1.4 KB a device).
	t.Resume = s.resumes(cd.Interval)
	raw, _ := json.Marshal(struct {
		D      config.Device
		Spec   []byte
		Resume bool // poll.keep_sessions changed it: rebuilt on reload
	}{*cd, spec, t.Resume})
	desc := sha256.Sum256(raw)
	return scheduler.Device{Name: cd.Name, Target: t, Verifier: v, Interval: cd.Interval, Policy: cd.Policy, Fixed: true}, desc, nil
}

// endpointsTarget is the target of an endpoints.json over transport via
// ("": NETCONF over TLS when it has it, else SSH); with cache, TLS
// sessions resume from it (one cache for the fleet) instead of the
// target's own.
func endpointsTarget(ep *endpoint.Endpoints, via string, cache tls.ClientSessionCache) (verifier.Target, error) {
	if via == "" {
		via = "tls"
		if ep.NetconfTLS == "" {
			via = "ssh"
		}
	}
	t, err := verifier.TargetOf(ep, via)
	if err == nil && t.TLS != nil && cache != nil {
		t.TLS.ClientSessionCache = cache
	}
	return t, err
}

// clientTLS is the client certificate file's content and the TLS
// configuration of it with key: read and parsed once per configuration
// load for every device that names the same pair (a fleet mostly has
// one: reading and parsing it again for each of 100,000 devices was
// seconds of a start). Dialling clones the configuration.
func (s *service) clientTLS(certFile, key string) ([]byte, *tls.Config, error) {
	k := [2]string{certFile, key}
	s.mu.Lock()
	c, ok := s.clients[k]
	s.mu.Unlock()
	if ok {
		return c.pem, c.cfg, nil
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(pem, []byte(key))
	if err != nil {
		return nil, nil, fmt.Errorf("client_key: %w", err)
	}
	c = clientIdentity{pem, &tls.Config{Certificates: []tls.Certificate{cert}, ClientSessionCache: s.cache}}
	s.mu.Lock()
	if s.clients == nil {
		s.clients = map[[2]string]clientIdentity{}
	}
	s.clients[k] = c
	s.mu.Unlock()
	return c.pem, c.cfg, nil
}

type clientIdentity struct {
	pem []byte
	cfg *tls.Config
}

func isConfigured(specs map[string][32]byte, name string) bool {
	_, ok := specs[name]
	return ok
}

// resumes says whether a device polled every interval (0: the default)
// reconnects each poll instead of keeping its session (poll.keep_sessions).
func (s *service) resumes(interval time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if interval == 0 {
		interval = s.interval
	}
	return interval > s.keep
}

// apiDevice builds a device added through the API (POST /devices): the
// default policy set, the configuration's trust anchors (an
// endpoints.json's own are not trusted here).
func (s *service) apiDevice(name string, ep *endpoint.Endpoints) (scheduler.Device, error) {
	t, err := endpointsTarget(ep, "", s.cache)
	if err != nil {
		return scheduler.Device{}, err
	}
	t.Name, t.Serial, t.Resume = name, ep.Serial, s.resumes(0)
	s.mu.Lock()
	v := s.verifiers[config.DefaultPolicy]
	s.mu.Unlock()
	return scheduler.Device{Name: name, Target: t, Verifier: v, Policy: config.DefaultPolicy}, nil
}

// storedDevice builds a device added through the API from what the store
// kept of it (api.DeviceSpec).
func (s *service) storedDevice(name string, spec []byte) (scheduler.Device, error) {
	var body api.DeviceSpec
	if err := json.Unmarshal(spec, &body); err != nil {
		return scheduler.Device{}, fmt.Errorf("its stored spec: %w", err)
	}
	return s.apiDevice(name, &body.Endpoints)
}

// upload verifies an uploaded RIM against every policy set's verifier and
// keeps it when one took it (or knew it).
func (s *service) upload(name string, raw []byte) (int, error) {
	s.mu.Lock()
	vs := slices.Collect(maps.Values(s.verifiers))
	s.mu.Unlock()
	n, err := addRIM(vs, name, raw)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n, s.db.AddRIM(ctx, name, raw)
}

// reload applies the configuration file again: new verifiers when the
// trust anchors, RIMs or policy sets changed (every device then moves to
// them), and the devices added, removed or changed; a device that did not
// change keeps polling.
func (s *service) reload(ctx context.Context, file string) {
	cfg, err := config.Load(file)
	if err != nil {
		s.log.Error("reload: the configuration does not load; keeping the running one", "err", err)
		return
	}
	s.mu.Lock()
	changedTrust := trustDigest(cfg) != s.trust
	old := s.specs
	// Devices built from here on: the new session rule, and client keys
	// read afresh (a rotated-out key is not kept).
	s.keep, s.clients = cfg.Poll.KeepSessions, nil
	s.mu.Unlock()
	if changedTrust {
		if err := s.configure(cfg); err != nil {
			s.log.Error("reload: keeping the running configuration", "err", err)
			return
		}
	}
	specs := map[string][32]byte{}
	var started, stopped, restarted int
	for i := range cfg.Devices {
		d, spec, err := s.configured(&cfg.Devices[i])
		if err != nil {
			s.log.Error("reload: device not (re)started", "device", cfg.Devices[i].Name, "err", err)
			continue
		}
		specs[d.Name] = spec
		prev, had := old[d.Name]
		switch {
		case had && prev == spec && !changedTrust:
			continue
		case had:
			s.sch.RemoveFixed(d.Name)
			restarted++
		default:
			started++
		}
		if err := s.sch.Add(d); err != nil {
			s.log.Error("reload: device not started", "device", d.Name, "err", err)
		}
	}
	for name := range old {
		if _, ok := specs[name]; !ok {
			s.sch.RemoveFixed(name)
			stopped++
		}
	}
	if changedTrust {
		// Devices added through the API move to the new verifiers too.
		for _, st := range s.sch.Devices() {
			if _, fixed := specs[st.Name]; fixed {
				continue
			}
			spec, ok := s.sch.Spec(st.Name)
			if !ok {
				continue
			}
			nd, err := s.storedDevice(st.Name, spec)
			if err != nil {
				s.log.Error("reload: device added through the API not moved to the new trust anchors", "device", st.Name, "err", err)
				continue
			}
			nd.Spec = nil // kept already
			s.sch.RemoveFixed(st.Name)
			s.sch.Add(nd)
		}
	}
	s.mu.Lock()
	s.specs = specs
	s.mu.Unlock()
	s.log.Info("reloaded", "started", started, "stopped", stopped, "restarted", restarted, "trust_changed", changedTrust)
}

// shareDevices keeps the devices added through the API the same as the
// shared store's, every period: those another collector added are
// polled here too (when leased here), those it removed are stopped.
func (s *service) shareDevices(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		// The names before the store's: a device added here after the
		// store was read is not taken for one removed elsewhere.
		before := s.sch.Names()
		stored, err := s.db.Devices(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("devices of the shared store", "err", err)
			}
			continue
		}
		s.mu.Lock()
		configured := maps.Clone(s.specs)
		s.mu.Unlock()
		polled := map[string]bool{}
		for _, n := range before {
			polled[n] = true
			if _, ok := stored[n]; !ok && !isConfigured(configured, n) {
				s.sch.RemoveFixed(n)
				s.log.Info("device removed by another collector", "device", n)
			}
		}
		for n, spec := range stored {
			if polled[n] || isConfigured(configured, n) {
				continue
			}
			d, err := s.storedDevice(n, spec)
			if err != nil {
				s.log.Error("a device added through the API cannot be polled", "device", n, "err", err)
				continue
			}
			if err := s.sch.Add(d); err == nil {
				s.log.Info("device added by another collector", "device", n)
			}
		}
	}
}

// retain applies the retention policy hourly.
func (s *service) retain(ctx context.Context, r config.Retention) {
	for {
		n, err := s.db.Prune(ctx, time.Now().Add(-r.MaxAge), r.Keep)
		if err != nil && ctx.Err() == nil {
			s.log.Error("retention", "err", err)
		} else if n > 0 {
			s.log.Info("retention: results deleted", "count", n, "older_than", r.MaxAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

var errNoPolicy = errors.New("no device's policy to add it to")
