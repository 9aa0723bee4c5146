package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/verifier"
)

// router is one router of the demo: its own riv-router process, with its
// own swtpm and riv-agent serve.
type router struct {
	name, attack, transport string
	biosLog                 string // a captured firmware log to boot, under the reference data
	lineCards               int    // line cards, each its own swtpm
	rebootEvery             time.Duration
	want                    ear.TrustTier
	dir                     string
	cmd                     *exec.Cmd
	serial                  string
}

var fleet = []*router{
	// Clean, booting a firmware log captured from a real HP machine.
	{name: "rtr-clean", attack: "none", transport: "tls", want: ear.TrustTierAffirming, biosLog: "eventlogs/uefi/ibmtss/hp1.bin"},
	{name: "rtr-kernel", attack: "tampered-kernel", transport: "ssh", want: ear.TrustTierContraindicated},
	{name: "rtr-miner", attack: "unknown-binary", transport: "ssh", want: ear.TrustTierWarning},
	{name: "rtr-2card", attack: "none", transport: "tls", want: ear.TrustTierAffirming, lineCards: 2},
	{name: "rtr-reboot", attack: "none", transport: "tls", want: ear.TrustTierAffirming, rebootEvery: time.Minute},
}

// runFleet starts the routers and riv-collector dev polling them every
// interval, prints the collector's URL and, every interval, the verdicts
// from its API, and stops everything on Ctrl-C. With once it returns after
// the first verdicts: an error unless every one is the expected one
// (waiting up to a minute for them).
func runFleet(routerBin, agent, collectorBin, reference string, once bool, interval time.Duration) error {
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
		if r.lineCards > 0 {
			args = append(args, "--line-cards", fmt.Sprint(r.lineCards))
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
	var eps []string
	for i, r := range fleet {
		ep, err := waitEndpoints(ctx, filepath.Join(r.dir, "endpoints.json"), 45*time.Second)
		if err != nil {
			b, _ := os.ReadFile(r.dir + ".log")
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			return fmt.Errorf("%s: %w: %s", r.name, err, lines[len(lines)-1])
		}
		r.serial = fmt.Sprintf("RTR-%04d", i+1)
		eps = append(eps, "--endpoints", filepath.Join(r.dir, "endpoints.json"))
		fmt.Printf("  %-11s up as %s (NETCONF-SSH %s, NETCONF-TLS %s)\n", r.name, ep.Serial, ep.NetconfSSH, ep.NetconfTLS)
	}
	// The collector: riv-collector dev polling the routers, its API on
	// 127.0.0.1.
	cdir := filepath.Join(base, "collector")
	ccmd := exec.Command(collectorBin, append([]string{"dev", "--dir", cdir, "--interval", interval.String()}, eps...)...)
	clog, err := os.Create(cdir + ".log")
	if err != nil {
		return err
	}
	ccmd.Stderr = clog
	ccmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	err = ccmd.Start()
	clog.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", collectorBin, err)
	}
	defer func() {
		ccmd.Process.Signal(syscall.SIGTERM)
		ccmd.Wait()
		fmt.Println("collector stopped")
	}()
	col, err := waitCollector(ctx, filepath.Join(cdir, "collector.json"), 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("fleet ready in %v\n\ndashboard: %s/\ncollector: %s  (API /api/v1/devices, metrics /metrics; tokens in %s; log %s)\n", time.Since(start).Round(time.Millisecond), col.URL, col.URL, filepath.Join(cdir, "collector.json"), cdir+".log")
	fmt.Printf("  curl -H 'Authorization: Bearer %s' %s/api/v1/devices\n", col.ReadonlyToken, col.URL)
	fmt.Printf("  rivctl devices --collector %s\n\n", filepath.Join(cdir, "collector.json"))
	// The router that reboots: riv-router reboot, every rebootEvery.
	for _, r := range fleet {
		if r.rebootEvery == 0 || once {
			continue
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(r.rebootEvery):
				}
				if err := r.reboot(ctx, routerBin); err != nil && ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, err)
				}
			}
		}()
	}
	for round := 1; ; round++ {
		// Every device appraised (the collector polls at once, then every
		// interval); with --once, wait up to a minute for the verdicts.
		var devs map[string]apiDevice
		for deadline := time.Now().Add(time.Minute); ; {
			if devs, err = col.devices(ctx); err != nil {
				return err
			}
			done := len(devs) == len(fleet)
			for _, r := range fleet {
				d, ok := devs[r.serial]
				done = done && ok && d.State == "appraised" && (!once || d.Status == r.want.String())
			}
			if done || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
		ok := true
		w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(w, "ROUTER\tDEVICE\tTPMS\tRESETS\tVERDICT\tEXPECTED\tREASONS\n")
		for _, r := range fleet {
			d := devs[r.serial]
			verdict, reasons := strings.ToUpper(d.Status), strings.Join(d.Reasons, "; ")
			switch {
			case d.State != "appraised":
				verdict, reasons, ok = strings.ToUpper(d.State), d.Error, false
			case reasons == "":
				reasons = "identity, quote, logs and every measured component match the signed RIMs"
			}
			if d.Status != r.want.String() {
				verdict += " (!)"
				ok = false
			}
			resets := "-"
			if d.ResetCount != nil {
				resets = fmt.Sprint(*d.ResetCount)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.name, r.serial, max(1, len(d.TPMs)), resets, verdict, r.want, reasons)
		}
		w.Flush()
		fmt.Printf("round %d at %v\n\n", round, time.Since(start).Round(time.Millisecond))
		if once {
			if !ok {
				return fmt.Errorf("a verdict differs from the expected one")
			}
			return rebootOnce(ctx, col, routerBin, devs)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// reboot reboots the router (riv-router reboot: a TPM reset and a fresh
// measured boot).
func (r *router) reboot(ctx context.Context, routerBin string) error {
	if out, err := exec.CommandContext(ctx, routerBin, "reboot", "--dir", r.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: reboot: %v: %s", r.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// rebootOnce is --once's check of the router that reboots: rebooted
// now, it is re-attested from its fresh boot (its resetCount one more)
// and still affirming.
func rebootOnce(ctx context.Context, col *collectorAPI, routerBin string, before map[string]apiDevice) error {
	for _, r := range fleet {
		if r.rebootEvery == 0 {
			continue
		}
		was := before[r.serial].ResetCount
		if was == nil {
			return fmt.Errorf("%s: no resetCount", r.name)
		}
		if err := r.reboot(ctx, routerBin); err != nil {
			return err
		}
		for deadline := time.Now().Add(time.Minute); ; {
			devs, err := col.devices(ctx)
			if err != nil {
				return err
			}
			d := devs[r.serial]
			if d.ResetCount != nil && *d.ResetCount > *was {
				if d.Status != r.want.String() {
					return fmt.Errorf("%s after its reboot: %s %v, want %s", r.name, d.Status, d.Reasons, r.want)
				}
				fmt.Printf("%s rebooted: re-attested from its fresh boot (resetCount %d -> %d), %s\n\n", r.name, *was, *d.ResetCount, strings.ToUpper(d.Status))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not re-attested within a minute of its reboot", r.name)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// collectorAPI is riv-collector dev's collector.json.
type collectorAPI struct {
	URL           string `json:"url"`
	ReadonlyToken string `json:"readonly_token"`
}

type apiDevice struct {
	Name    string   `json:"name"`
	State   string   `json:"state"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	Error   string   `json:"error"`
	// ResetCount is the TPM's (it grows with each reboot); TPMs are the
	// TPMs of a router with line cards.
	ResetCount *uint32    `json:"reset_count"`
	TPMs       []struct{} `json:"tpms"`
}

func waitCollector(ctx context.Context, path string, max time.Duration) (*collectorAPI, error) {
	for deadline := time.Now().Add(max); time.Now().Before(deadline); {
		var c collectorAPI
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &c) == nil && c.URL != "" {
			return &c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("the collector wrote no %s within %v", path, max)
}

// devices reads the collector's devices, by name.
func (c *collectorAPI) devices(ctx context.Context) (map[string]apiDevice, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", c.URL+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+c.ReadonlyToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("collector API: %w", err)
	}
	defer resp.Body.Close()
	var v struct{ Devices []apiDevice }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&v); err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("collector API: %s: %v", resp.Status, err)
	}
	out := map[string]apiDevice{}
	for _, d := range v.Devices {
		out[d.Name] = d
	}
	return out, nil
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
