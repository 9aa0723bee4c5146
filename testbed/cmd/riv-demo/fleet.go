package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
)

// router is one router of the demo: its own riv-router process, with its
// own swtpm and riv-agent serve.
type router struct {
	name, attack, transport string
	biosLog                 string // a captured firmware log to boot, under the reference data
	want                    ear.TrustTier
	dir                     string
	cmd                     *exec.Cmd
	target                  verifier.Target
	v                       *verifier.Verifier
}

var fleet = []*router{
	{name: "rtr-clean", attack: "none", transport: "tls", want: ear.TrustTierAffirming},
	{name: "rtr-kernel", attack: "tampered-kernel", transport: "ssh", want: ear.TrustTierContraindicated},
	{name: "rtr-miner", attack: "unknown-binary", transport: "ssh", want: ear.TrustTierWarning},
	{name: "rtr-hp", attack: "none", transport: "tls", want: ear.TrustTierAffirming, biosLog: "eventlogs/uefi/ibmtss/hp1.bin"},
}

// runFleet starts the routers, appraises them every interval, prints the
// verdicts, and stops everything on Ctrl-C. With once it returns after one
// round: an error unless every verdict is the expected one.
func runFleet(routerBin, agent, reference string, once bool, interval time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	base, err := os.MkdirTemp("", "riv-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	start := time.Now()
	fmt.Printf("Starting %d routers (riv-router: swtpm, riv-agent provision, measured boot, riv-agent serve)...\n", len(fleet))
	for i, r := range fleet {
		r.dir = filepath.Join(base, r.name)
		args := []string{"--dir", r.dir, "--serial", fmt.Sprintf("RTR-%04d", i+1), "--attack", r.attack, "--agent", agent}
		if r.biosLog != "" {
			args = append(args, "--bios-log", filepath.Join(reference, r.biosLog))
		}
		r.cmd = exec.Command(routerBin, args...)
		logf, err := os.Create(r.dir + ".log")
		if err != nil {
			return err
		}
		r.cmd.Stderr = logf
		// Its own process group keeps a terminal's Ctrl-C from reaching
		// it before riv-demo stops it; Pdeathsig stops it when riv-demo
		// dies any other way (kill -9 included), so no router outlives it
		// (nor its swtpm and agent, which riv-router holds the same way).
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		err = r.cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("start %s: %w", routerBin, err)
		}
	}
	defer func() {
		for _, r := range fleet {
			if r.cmd != nil && r.cmd.Process != nil {
				r.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, r := range fleet {
			if r.cmd != nil {
				r.cmd.Wait()
			}
		}
		fmt.Println("all routers stopped")
	}()
	for _, r := range fleet {
		ep, err := waitEndpoints(ctx, filepath.Join(r.dir, "endpoints.json"), 45*time.Second)
		if err != nil {
			b, _ := os.ReadFile(r.dir + ".log")
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			return fmt.Errorf("%s: %w: %s", r.name, err, lines[len(lines)-1])
		}
		if r.target, err = verifier.TargetOf(ep, r.transport); err != nil {
			return err
		}
		r.target.Name = r.name
		anchors, err := verifier.LoadPool(ep.TrustAnchors)
		if err != nil {
			return err
		}
		rimPool, err := verifier.LoadPool(ep.RIMSigner)
		if err != nil {
			return err
		}
		idx, n, err := verifier.LoadRIMs(ep.RIMs, rimPool)
		if err != nil {
			return err
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r.v = verifier.New(verifier.Policy{Anchors: anchors, RIMs: idx, Banks: []alg.ID{alg.SHA256}}, key)
		// Rounds reuse each router's NETCONF session (well within the
		// agent's idle timeout), as a long-running collector should.
		r.v.Reuse = true
		defer r.v.Close()
		fmt.Printf("  %-11s up at %s (NETCONF-SSH %s, NETCONF-TLS %s), %d signed RIMs verified\n", r.name, ep.Serial, ep.NetconfSSH, ep.NetconfTLS, n)
	}
	db, err := store.Open(ctx, filepath.Join(base, "riv.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Printf("fleet ready in %v; results stored in %s\n\n", time.Since(start).Round(time.Millisecond), filepath.Join(base, "riv.db"))
	for round := 1; ; round++ {
		ok := true
		w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(w, "ROUTER\tVIA\tVERDICT\tEXPECTED\tREASONS\n")
		for _, r := range fleet {
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := r.v.AppraiseTarget(actx, r.target)
			cancel()
			if err != nil {
				fmt.Fprintf(w, "%s\t%s\tERROR\t%s\t%v\n", r.name, r.transport, r.want, err)
				ok = false
				continue
			}
			if _, err := db.Save(ctx, res, store.Saved{}); err != nil {
				return fmt.Errorf("store result: %w", err)
			}
			reasons := strings.Join(res.Reasons, "; ")
			if reasons == "" {
				reasons = "identity, quote, logs and every measured component match the signed RIMs"
			}
			mark := ""
			if res.Status != r.want {
				mark = " (!)"
				ok = false
			}
			fmt.Fprintf(w, "%s\tNETCONF-%s\t%s%s\t%s\t%s\n", r.name, strings.ToUpper(r.transport), strings.ToUpper(res.Status.String()), mark, r.want, reasons)
		}
		w.Flush()
		fmt.Printf("round %d done at %v\n\n", round, time.Since(start).Round(time.Millisecond))
		if once {
			if !ok {
				return fmt.Errorf("a verdict differs from the expected one")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func waitEndpoints(ctx context.Context, path string, max time.Duration) (*verifier.Endpoints, error) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if ep, err := verifier.ReadEndpoints(path); err == nil {
			return ep, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("no %s after %v", path, max)
}
