package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
)

// cmdAttest appraises one device over NETCONF and prints the verdict with
// its reasons (exit 0 when affirming, 1 otherwise).
func cmdAttest(args []string, out io.Writer) error {
	fs := newFlags("attest")
	endpoints := fs.String("endpoints", "", "endpoints.json of a riv-agent dev device (sets the other flags)")
	sshAddr := fs.String("netconf-ssh", "", "NETCONF-over-SSH address")
	tlsAddr := fs.String("netconf-tls", "", "NETCONF-over-TLS address")
	user := fs.String("user", "", "SSH user")
	sshKey := fs.String("ssh-key", "", "SSH private key")
	tlsCert := fs.String("tls-cert", "", "TLS client certificate")
	tlsKey := fs.String("tls-key", "", "TLS client key")
	anchors := fs.String("anchors", "", "manufacturer CA certificates (PEM) for IDevID/IAK")
	rimAnchors := fs.String("rim-anchors", "", "vendor CA certificates (PEM) for RIMs")
	rims := fs.String("rims", "", "directory of signed RIMs")
	via := fs.String("transport", "", "with --endpoints: ssh (default) or tls")
	asJSON := fs.Bool("json", false, "print the EAR claims as JSON")
	timeout := fs.Duration("timeout", 60*time.Second, "overall deadline")
	dbPath := fs.String("db", "", "SQLite database to store the result in (history kept)")
	profile := fs.String("ear-profile", "veraison", "EAR claim names: veraison or draft-03")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ep := &verifier.Endpoints{NetconfSSH: *sshAddr, NetconfTLS: *tlsAddr, SSHUser: *user, SSHPrivateKey: *sshKey,
		TLSClientCert: *tlsCert, TLSClientKey: *tlsKey, TrustAnchors: *anchors, RIMSigner: *rimAnchors, RIMs: *rims}
	transport := "ssh"
	if *tlsAddr != "" {
		transport = "tls"
	}
	if *endpoints != "" {
		e, err := verifier.ReadEndpoints(*endpoints)
		if err != nil {
			return badInput("%v", err)
		}
		ep = e
		if *via != "" {
			if *via != "ssh" && *via != "tls" {
				return badInput("--transport %q: want ssh or tls", *via)
			}
			transport = *via
		}
	}
	if ep.TrustAnchors == "" || ep.RIMSigner == "" || ep.RIMs == "" || (ep.NetconfSSH == "" && ep.NetconfTLS == "") {
		return badInput("attest: give --endpoints, or --netconf-ssh/--netconf-tls with credentials, --anchors, --rim-anchors and --rims")
	}
	pool, err := verifier.LoadPool(ep.TrustAnchors)
	if err != nil {
		return badInput("%v", err)
	}
	rimPool, err := verifier.LoadPool(ep.RIMSigner)
	if err != nil {
		return badInput("%v", err)
	}
	idx, _, err := verifier.LoadRIMs(ep.RIMs, rimPool)
	if err != nil {
		return badInput("%v", err)
	}
	target, err := verifier.TargetOf(ep, transport)
	if err != nil {
		return badInput("%v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if *profile != "veraison" && *profile != "draft-03" {
		return badInput("--ear-profile %q: want veraison or draft-03", *profile)
	}
	pol := verifier.Policy{Anchors: pool, RIMs: idx, Banks: []alg.ID{alg.SHA256, alg.SHA384}}
	if ep.OwnerAnchors != "" {
		if pol.OwnerAnchors, err = verifier.LoadPool(ep.OwnerAnchors); err != nil {
			return badInput("%v", err)
		}
	}
	v := verifier.New(pol, key)
	v.ClaimProfile = *profile
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := v.AppraiseTarget(ctx, target)
	if err != nil {
		return badInput("attest: %v", err)
	}
	if *dbPath != "" {
		db, err := store.Open(ctx, *dbPath)
		if err != nil {
			return badInput("%v", err)
		}
		_, err = db.Save(ctx, r)
		db.Close()
		if err != nil {
			return badInput("store: %v", err)
		}
	}
	if *asJSON {
		parts := strings.Split(string(r.EAR), ".")
		if len(parts) == 3 {
			if claims, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
				var v any
				json.Unmarshal(claims, &v)
				b, _ := json.MarshalIndent(v, "", "  ")
				fmt.Fprintf(out, "%s\n", b)
			}
		}
	} else {
		printVerdict(out, r)
	}
	if r.Status.String() != "affirming" {
		return failed{fmt.Sprintf("%s: %s", r.Device, r.Status)}
	}
	return nil
}

func printVerdict(out io.Writer, r *verifier.Result) {
	fmt.Fprintf(out, "%s (serial %s): %s\n", r.Device, r.Serial, strings.ToUpper(r.Status.String()))
	for _, line := range strings.Split(strings.TrimSpace(r.Vector.Report(true, false)), "\n") {
		fmt.Fprintf(out, "  %s\n", strings.TrimSpace(line))
	}
	for _, reason := range r.Reasons {
		fmt.Fprintf(out, "  - %s\n", reason)
	}
	if r.Rebooted {
		fmt.Fprintf(out, "  (device rebooted since the last appraisal: re-attested from a fresh log)\n")
	}
}
