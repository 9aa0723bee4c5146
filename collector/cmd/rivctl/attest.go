package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/cli"
)

const attestHelp = `Targets are endpoints.json files (as riv-agent dev writes them), given
with --endpoints (repeatable) or as arguments, or one device given by
--netconf-ssh/--netconf-tls with its credentials and --anchors,
--rim-anchors and --rims. Devices are appraised in parallel; one line per
device is printed, in the order given (--verbose adds the trust vector and
every reason). The exit status is the highest of the devices': 0 all
affirming, 1 some evidence failed, 3 some device was unreachable.

With --json, one JSON object per device and line, with at least the keys
device, serial, status, reasons, trust_vector and ear (the signed JWT);
an unreachable device has status "unreachable" and an error.

The EAR is signed with --ear-key (an ECDSA P-256 or P-384 private key,
PEM PKCS#8 or SEC1, or a JWK), so that "rivctl ear verify --key PUB" and
veraison's "arc verify" can check it; without it, with a throwaway key.

With --collector (or --all), the devices are re-attested by the
collector instead (POST /api/v1/devices/NAME/attest): the arguments are
device names as the collector knows them, or --all for every device it
polls. A line per device is printed as its result comes (a progress bar
on stderr when it is a terminal); the exit status is as above.

` + collectorHelp

// attestOpts are the flags of one run.
type attestOpts struct {
	transport    string
	profile      string
	timeout      time.Duration
	stageTimeout time.Duration
	key          crypto.Signer
	dbPath       string
}

// device is one target and what became of it.
type device struct {
	label  string // what the operator gave: a file or an address
	ep     *verifier.Endpoints
	result *verifier.Result
	err    error // the device could not be appraised
}

// cmdAttest appraises devices over NETCONF and prints their verdicts.
func cmdAttest(env *cli.Env, args []string) error {
	fs := env.Flags()
	var endpoints cli.Strings
	fs.Var(&endpoints, "endpoints", "endpoints.json `FILE` of a device (repeatable; also as arguments)")
	sshAddr := fs.String("netconf-ssh", "", "NETCONF-over-SSH `HOST:PORT` of one device")
	tlsAddr := fs.String("netconf-tls", "", "NETCONF-over-TLS `HOST:PORT` of one device")
	rcURL := fs.String("restconf", "", "RESTCONF `URL` (https://HOST:PORT) of one device")
	user := fs.String("user", "", "SSH `USER`")
	sshKey := fs.String("ssh-key", "", "SSH private key `FILE`")
	tlsCert := fs.String("tls-cert", "", "TLS client certificate `FILE`")
	tlsKey := fs.String("tls-key", "", "TLS client key `FILE`")
	anchors := fs.String("anchors", "", "manufacturer CA certificates (PEM `FILE`) for IDevID/IAK")
	ownerAnchors := fs.String("owner-anchors", "", "owner CA certificates (PEM `FILE`) for LDevID/LAK")
	rimAnchors := fs.String("rim-anchors", "", "vendor CA certificates (PEM `FILE`) for RIMs")
	rims := fs.String("rims", "", "`DIR` of signed RIMs")
	via := fs.String("transport", "", "`TRANSPORT` with endpoints files: ssh (default), tls (NETCONF over TLS), restconf or snmp (SNMPv3, RIV-ATTESTATION-MIB)")
	asJSON := fs.Bool("json", false, "one JSON object per device")
	verbose := fs.Bool("verbose", false, "print the trust vector and every reason under each device")
	timeout := fs.Duration("timeout", 60*time.Second, "deadline for each device")
	stageTimeout := fs.Duration("stage-timeout", netconf.DefaultStageTimeout, "deadline for each stage of reaching a device (TCP, SSH/TLS handshake, NETCONF hello)")
	parallel := fs.Int("parallel", 8, "`N` devices appraised at once")
	dbPath := fs.String("db", "", "SQLite database `FILE` to store the results in (history kept)")
	profile := fs.String("ear-profile", "veraison", "EAR claim names (`PROFILE`): veraison or draft-03")
	earKey := fs.String("ear-key", "", "EAR signing key `FILE` (ECDSA P-256/P-384; PEM or JWK)")
	cf := addCollectorFlags(fs)
	all := fs.Bool("all", false, "with a collector: re-attest every device it polls")
	if err := env.ParseInOrder(fs, args, &endpoints); err != nil {
		return err
	}
	viaCollector := *all
	fs.Visit(func(f *flag.Flag) { viaCollector = viaCollector || f.Name == "collector" })
	if viaCollector {
		if *timeout <= 0 || *parallel < 1 {
			return badInput("attest: --parallel and --timeout must be positive")
		}
		return attestCollector(env, cf, endpoints, *all, *asJSON, *parallel, *timeout)
	}
	o := attestOpts{transport: *via, profile: *profile, timeout: *timeout, stageTimeout: *stageTimeout, dbPath: *dbPath}
	if o.transport != "" && o.transport != "ssh" && o.transport != "tls" && o.transport != "restconf" && o.transport != "snmp" {
		return badInput("attest: --transport %q: want ssh, tls, restconf or snmp", o.transport)
	}
	if o.profile != "veraison" && o.profile != "draft-03" {
		return badInput("attest: --ear-profile %q: want veraison or draft-03", o.profile)
	}
	if *parallel < 1 || *timeout <= 0 || *stageTimeout <= 0 {
		return badInput("attest: --parallel, --timeout and --stage-timeout must be positive")
	}

	var devs []*device
	files := endpoints // --endpoints and arguments, in the order given
	explicit := *sshAddr != "" || *tlsAddr != "" || *rcURL != ""
	switch {
	case explicit && len(files) > 0:
		// A stray argument is never ignored.
		return badInput("attest: give endpoints files or --netconf-ssh/--netconf-tls/--restconf, not both (unexpected %q)", files[0])
	case explicit && o.transport == "snmp":
		return badInput("attest: --transport snmp takes endpoints files (they carry the SNMPv3 user and keys)")
	case explicit:
		if n := len(slices.DeleteFunc([]string{*sshAddr, *tlsAddr, *rcURL}, func(a string) bool { return a == "" })); n > 1 {
			return badInput("attest: give one of --netconf-ssh, --netconf-tls and --restconf")
		}
		ep := &verifier.Endpoints{NetconfSSH: *sshAddr, NetconfTLS: *tlsAddr, RESTCONF: *rcURL, SSHUser: *user, SSHPrivateKey: *sshKey,
			TLSClientCert: *tlsCert, TLSClientKey: *tlsKey, TrustAnchors: *anchors, OwnerAnchors: *ownerAnchors, RIMSigner: *rimAnchors, RIMs: *rims}
		if ep.TrustAnchors == "" || ep.RIMSigner == "" {
			return badInput("attest: --anchors and --rim-anchors are required with --netconf-ssh/--netconf-tls/--restconf (--rims too for a device that carries no RIMs)")
		}
		switch {
		case *tlsAddr != "":
			o.transport = "tls"
		case *rcURL != "":
			o.transport = "restconf"
		}
		devs = append(devs, &device{label: *sshAddr + *tlsAddr + *rcURL, ep: ep})
	case len(files) == 0:
		return badInput("attest: no target: give endpoints files, or --netconf-ssh/--netconf-tls/--restconf (see --help)")
	default:
		for _, f := range files {
			ep, err := verifier.ReadEndpoints(f)
			if err != nil {
				return badInput("attest: %v", err)
			}
			if *ownerAnchors != "" {
				ep.OwnerAnchors = *ownerAnchors
			}
			devs = append(devs, &device{label: f, ep: ep})
		}
	}
	if *earKey != "" {
		k, err := loadEARKey(*earKey)
		if err != nil {
			return err
		}
		o.key = k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		o.key = k
	}
	// Each distinct set of anchors and RIMs is loaded (and every RIM's
	// signature checked) once, before any device is dialled: unreadable
	// policy is a usage error, not a device's failure.
	policies := map[[4]string]*verifier.Policy{}
	for _, d := range devs {
		k := d.policyKey()
		if policies[k] == nil {
			p, err := loadPolicy(d.ep)
			if err != nil {
				return err
			}
			policies[k] = p
		}
	}

	var db *store.Store
	if o.dbPath != "" {
		var err error
		if db, err = store.Open(context.Background(), o.dbPath); err != nil {
			return badInput("attest: %v", err)
		}
		defer db.Close()
	}
	prog := newProgress(env, len(devs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, *parallel)
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.result, d.err = appraise(prog.trace(d), *policies[d.policyKey()], d, o)
			prog.done()
		}()
	}
	wg.Wait()
	env.EndProgress()

	code := cli.ExitOK
	var worst error
	for _, d := range devs {
		c, err := d.report(env.Stdout, *asJSON, *verbose)
		if db != nil && d.result != nil {
			if _, serr := db.Save(context.Background(), d.result, store.Saved{}); serr != nil {
				return badInput("attest: store: %v", serr)
			}
		}
		if c > code {
			code, worst = c, err
		}
	}
	if code == cli.ExitOK {
		return nil
	}
	if len(devs) > 1 {
		return &cli.Error{Code: code, Err: fmt.Errorf("%d devices: worst: %w", len(devs), worst)}
	}
	return &cli.Error{Code: code, Err: worst}
}

func loadPolicy(ep *verifier.Endpoints) (*verifier.Policy, error) {
	pol, err := verifier.PolicyOf(ep)
	if err != nil {
		return nil, badInput("attest: %v", err)
	}
	return pol, nil
}

// appraise reaches one device and appraises it. An error means it was
// not appraised: unreachable, or the session failed.
func appraise(ctx context.Context, pol verifier.Policy, d *device, o attestOpts) (*verifier.Result, error) {
	transport := o.transport
	if transport == "" {
		transport = "ssh"
	}
	target, err := verifier.TargetOf(d.ep, transport)
	if err != nil {
		return nil, badInput("%s: %v", d.label, err)
	}
	switch {
	case transport == "snmp" && target.SNMP == "":
		return nil, badInput("%s: no SNMP address", d.label)
	case transport == "restconf" && target.RESTCONF == "":
		return nil, badInput("%s: no RESTCONF address", d.label)
	case (transport == "tls" && target.TLSAddr == "") || (transport == "ssh" && target.SSHAddr == ""):
		return nil, badInput("%s: no NETCONF-over-%s address", d.label, strings.ToUpper(transport))
	}
	target.StageTimeout = o.stageTimeout
	v := verifier.New(pol, o.key)
	v.ClaimProfile = o.profile
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, err := v.AppraiseTarget(ctx, target)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && !netconf.Unreachable(err) {
			err = fmt.Errorf("no verdict within %s: %w", o.timeout, err)
		}
		return nil, cli.Unreachable("%s: %v", d.name(), err)
	}
	return r, nil
}

// policyKey names the trust inputs a device is appraised with.
func (d *device) policyKey() [4]string {
	return [4]string{d.ep.TrustAnchors, d.ep.OwnerAnchors, d.ep.RIMSigner, d.ep.RIMs}
}

func (d *device) name() string {
	if d.ep.Serial != "" {
		return d.ep.Serial
	}
	return d.label
}

// verdict is the --json object of one device; its keys are a contract.
type verdict struct {
	Device      string           `json:"device"`
	Serial      string           `json:"serial"`
	Status      string           `json:"status"`
	Reasons     []string         `json:"reasons"`
	TrustVector *ear.TrustVector `json:"trust_vector"`
	EAR         string           `json:"ear"`
	Rebooted    bool             `json:"rebooted,omitempty"`
	Target      string           `json:"target"`
	Error       string           `json:"error,omitempty"`
	// TPMs are the verdicts of each TPM of a device with line cards.
	TPMs []tpmVerdict `json:"tpms,omitempty"`
}

type tpmVerdict struct {
	Name        string           `json:"name"`
	Status      string           `json:"status"`
	Reasons     []string         `json:"reasons"`
	TrustVector *ear.TrustVector `json:"trust_vector"`
}

// report prints the device's line (or object) and returns its exit code
// with the reason for it.
func (d *device) report(out io.Writer, asJSON, verbose bool) (int, error) {
	v := verdict{Device: d.name(), Serial: d.ep.Serial, Reasons: []string{}, Target: d.label}
	code := cli.ExitOK
	var err error
	switch r := d.result; {
	case d.err != nil:
		code, err = cli.Code(d.err), d.err
		v.Status, v.Error = "unreachable", d.err.Error()
		if code == cli.ExitUsage {
			v.Status = "error"
		}
	default:
		v.Device, v.Serial, v.Status, v.EAR, v.Rebooted = r.Device, r.Serial, r.Status.String(), string(r.EAR), r.Rebooted
		v.TrustVector = &r.Vector
		v.Reasons = append(v.Reasons, r.Reasons...)
		for i := range r.TPMs {
			t := &r.TPMs[i]
			v.TPMs = append(v.TPMs, tpmVerdict{Name: t.Name, Status: t.Status.String(), Reasons: append([]string{}, t.Reasons...), TrustVector: &t.Vector})
		}
		if r.Status != ear.TrustTierAffirming {
			code, err = cli.ExitFailed, fmt.Errorf("%s: %s", v.Device, r.Status)
			if len(r.Reasons) > 0 {
				err = fmt.Errorf("%w: %s", err, r.Reasons[0])
			}
		}
	}
	if asJSON {
		b, _ := json.Marshal(v)
		fmt.Fprintf(out, "%s\n", b)
		return code, err
	}
	if d.err != nil {
		fmt.Fprintf(out, "%s: %s: %v\n", v.Device, strings.ToUpper(v.Status), d.err)
		return code, err
	}
	line := fmt.Sprintf("%s (serial %s): %s", v.Device, v.Serial, strings.ToUpper(v.Status))
	if len(v.Reasons) > 0 && !verbose {
		line += ": " + firstOf(v.Reasons)
	}
	fmt.Fprintln(out, line)
	if verbose {
		for _, l := range strings.Split(strings.TrimSpace(d.result.Vector.Report(true, false)), "\n") {
			fmt.Fprintf(out, "  %s\n", strings.TrimSpace(l))
		}
		for _, reason := range v.Reasons {
			fmt.Fprintf(out, "  - %s\n", reason)
		}
		for _, t := range v.TPMs {
			fmt.Fprintf(out, "  TPM %s: %s\n", t.Name, strings.ToUpper(t.Status))
		}
		if v.Rebooted {
			fmt.Fprintf(out, "  (device rebooted since the last appraisal: re-attested from a fresh log)\n")
		}
	}
	return code, err
}

// progress shows, on a terminal only, the stage the devices are in.
type progress struct {
	env        *cli.Env
	mu         sync.Mutex
	total, fin int
}

func newProgress(env *cli.Env, total int) *progress { return &progress{env: env, total: total} }

func (p *progress) trace(d *device) context.Context {
	return netconf.WithTrace(context.Background(), func(stage string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.env.Progress("[%d/%d] %s: %s", p.fin, p.total, d.name(), stage)
	})
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fin++
}
