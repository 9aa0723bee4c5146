package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openriv/riv/collector/api"
	"github.com/openriv/riv/collector/dashboard"
	"github.com/openriv/riv/collector/metrics"
	"github.com/openriv/riv/collector/notify"
	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/atomicfile"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/internal/lockdir"
	"github.com/openriv/riv/pkg/endpoint"
)

const devHelp = `Polls the devices of the endpoints.json files every interval over
NETCONF-TLS (NETCONF-SSH for a device without TLS), stores every result in
DIR/riv.db (SQLite), signs each EAR with DIR/ear-key.pem (created on the
first start, kept after), and serves the API on 127.0.0.1 over HTTP:
GET /api/v1/devices, /api/v1/devices/{name}, /api/v1/devices/{name}/ear,
/api/v1/devices/{name}/history, /api/v1/posture, /api/v1/keys (the EAR
key's JWKS, public), POST /api/v1/devices/{name}/attest, POST
/api/v1/devices (an endpoints.json object) and DELETE
/api/v1/devices/{name} (admin), and the
Prometheus metrics at /metrics, and the state changes as server-sent
events at /api/v1/events. With --webhook, each state change is also
POSTed there as JSON, signed (X-RIV-Signature: sha256=HMAC of the body
with the secret), kept in the store until delivered, retried with
backoff. Requests carry
"Authorization: Bearer TOKEN" with a token of DIR/collector.json, which
is written when the API serves; DIR is locked while the collector runs.`

func runDev(env *cli.Env, args []string) error {
	fs := env.Flags()
	dir := fs.String("dir", "", "directory for the store, the EAR key, the tokens and collector.json")
	var eps cli.Strings
	fs.Var(&eps, "endpoints", "endpoints.json `FILE` of a device (repeatable; also as arguments)")
	interval := fs.Duration("interval", 30*time.Second, "time between polls of a device")
	addr := fs.String("addr", "127.0.0.1:0", "API listen `HOST:PORT` (a 127.0.0.0/8 address: dev serves plain HTTP)")
	webhook := fs.String("webhook", "", "POST every state change to `URL` (signed, retried, kept across restarts)")
	webhookSecret := fs.String("webhook-secret", "", "`FILE` whose first line is the webhook's HMAC secret (required with --webhook)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	eps = append(eps, fs.Args()...)
	if *dir == "" {
		return cli.Usage("dev: --dir is required")
	}
	if *interval < time.Second {
		return cli.Usage("dev: --interval %v: want at least 1s", *interval)
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil || !net.ParseIP(host).IsLoopback() {
		return cli.Usage("dev: --addr %q: dev serves plain HTTP, only on a loopback address", *addr)
	}
	var secret []byte
	if *webhook != "" {
		if *webhookSecret == "" {
			return cli.Usage("dev: --webhook needs --webhook-secret")
		}
		b, err := os.ReadFile(*webhookSecret)
		if err != nil {
			return cli.Usage("dev: --webhook-secret: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if secret = []byte(strings.TrimSpace(line)); len(secret) < 16 {
			return cli.Usage("dev: --webhook-secret %s: want a secret of 16 characters or more", *webhookSecret)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return cli.Usage("dev: %v", err)
	}
	unlock, err := lockdir.Lock(*dir, "riv-collector dev")
	if err != nil {
		return err
	}
	defer unlock()
	key, err := earKey(filepath.Join(*dir, "ear-key.pem"))
	if err != nil {
		return cli.Usage("dev: %v", err)
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	fl := &fleet{key: key, verifiers: map[string]*verifier.Verifier{}}
	devices, err := fl.devices(eps)
	if err != nil {
		return cli.Usage("dev: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	db, err := store.Open(ctx, filepath.Join(*dir, "riv.db"))
	if err != nil {
		return cli.Usage("dev: store: %v", err)
	}
	defer db.Close()
	// The devices added and the RIMs uploaded through the API before.
	stored, err := db.Devices(ctx)
	if err != nil {
		return cli.Usage("dev: store: %v", err)
	}
	for name, spec := range stored {
		var body api.DeviceSpec
		if slices.ContainsFunc(devices, func(d scheduler.Device) bool { return d.Name == name }) || json.Unmarshal(spec, &body) != nil {
			continue
		}
		d, err := fl.device(name, &body.Endpoints)
		if err != nil {
			log.Warn("a device added through the API cannot be polled", "device", name, "err", err)
			continue
		}
		devices = append(devices, d)
	}
	ups, err := db.RIMs(ctx)
	if err != nil {
		return cli.Usage("dev: store: %v", err)
	}
	for _, u := range ups {
		if _, err := fl.addRIM(u.Name, u.Raw); err != nil {
			log.Warn("an uploaded RIM no longer verifies", "rim", u.Name, "err", err)
		}
	}
	upload := func(name string, raw []byte) (int, error) {
		n, err := fl.addRIM(name, raw)
		if err != nil {
			return 0, err
		}
		return n, db.AddRIM(ctx, name, raw)
	}
	var sch *scheduler.Scheduler
	m := metrics.New(func() metrics.Fleet { return sch })
	so := scheduler.Options{Interval: *interval, Store: db, Logger: log, Observer: m}
	var wh *notify.Webhook
	if *webhook != "" {
		wh = notify.New(*webhook, secret, db, log)
		so.Outbox = wh.Keep
	}
	sch = scheduler.New(so, devices)
	admin, read := token(), token()
	// dev's metrics need no token: it serves on a loopback address only.
	// The dashboard opens without signing in: dev listens on 127.0.0.0/8.
	srv := &api.Server{Fleet: sch, AdminToken: admin, ReadToken: read, EARKey: &key.PublicKey, Metrics: m.Handler(), NewDevice: fl.device, AddRIM: upload,
		Dashboard: dashboard.Handler(), OpenDashboard: true}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return cli.Usage("dev: %v", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 3 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		// Requests end with the collector: an event stream does not hold
		// up the shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	done := make(chan struct{})
	var hooked chan struct{}
	if wh != nil {
		hooked = make(chan struct{})
		go func() { defer close(hooked); wh.Run(ctx) }()
	}
	go func() { defer close(done); sch.Run(ctx) }()
	url := "http://" + ln.Addr().String()
	b, _ := json.MarshalIndent(map[string]string{"url": url, "admin_token": admin, "readonly_token": read}, "", "  ")
	if err := atomicfile.Write(filepath.Join(*dir, "collector.json"), append(b, '\n'), 0o600); err != nil {
		return cli.Usage("dev: %v", err)
	}
	log.Info("serving", "url", url, "devices", len(devices), "interval", *interval, "collector", filepath.Join(*dir, "collector.json"))
	select {
	case <-ctx.Done():
	case err := <-errc:
		return cli.Usage("dev: API: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	<-done
	if hooked != nil {
		<-hooked
	}
	log.Info("stopped")
	return nil
}

// fleet builds the devices to poll from endpoints.json: a verifier per
// policy (devices with the same anchors and RIMs share one), each keeping
// its sessions between polls.
type fleet struct {
	key       *ecdsa.PrivateKey
	mu        sync.Mutex
	verifiers map[string]*verifier.Verifier
}

func (f *fleet) device(name string, ep *endpoint.Endpoints) (scheduler.Device, error) {
	pk := strings.Join([]string{ep.TrustAnchors, ep.OwnerAnchors, ep.RIMSigner, ep.RIMs}, "\x00")
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.verifiers[pk]
	if v == nil {
		pol, err := verifier.PolicyOf(ep)
		if err != nil {
			return scheduler.Device{}, err
		}
		v = verifier.New(*pol, f.key)
		v.Reuse = true
		f.verifiers[pk] = v
	}
	t, err := endpointsTarget(ep, "", nil)
	if err != nil {
		return scheduler.Device{}, err
	}
	t.Name = name
	return scheduler.Device{Name: name, Target: t, Verifier: v, Policy: v.Policy.Name}, nil
}

// addRIM offers an uploaded RIM to every policy's verifier.
func (f *fleet) addRIM(name string, raw []byte) (int, error) {
	f.mu.Lock()
	vs := slices.Collect(maps.Values(f.verifiers))
	f.mu.Unlock()
	return addRIM(vs, name, raw)
}

// addRIM offers an uploaded RIM to each verifier: each that verifies it
// (its vendor anchors) adds it. It returns how many added it, or why none
// took it (none knew it either).
func addRIM(vs []*verifier.Verifier, name string, raw []byte) (int, error) {
	n, known := 0, false
	var errs []error
	for _, v := range vs {
		added, err := v.AddRIM(name, raw)
		switch {
		case err != nil:
			errs = append(errs, err)
		case added:
			n++
		default:
			known = true
		}
	}
	if n == 0 && !known {
		if len(errs) == 0 {
			return 0, errNoPolicy
		}
		return 0, errs[0]
	}
	return n, nil
}

// devices reads the endpoints files.
func (f *fleet) devices(files []string) ([]scheduler.Device, error) {
	names := map[string]bool{}
	var out []scheduler.Device
	for _, file := range files {
		ep, err := verifier.ReadEndpoints(file)
		if err != nil {
			return nil, err
		}
		name := ep.Serial
		if name == "" {
			name = filepath.Base(filepath.Dir(file))
		}
		if names[name] {
			return nil, fmt.Errorf("%s: a second device named %q", file, name)
		}
		names[name] = true
		d, err := f.device(name, ep)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// earKey loads the EAR signing key, creating it on the first start: the
// relying parties trust it, so it is never a throwaway.
func earKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return k, atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || (ek.Curve != elliptic.P256() && ek.Curve != elliptic.P384()) {
		return nil, fmt.Errorf("%s: want an ECDSA P-256 or P-384 key", path)
	}
	return ek, nil
}

func token() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
