package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/openriv/riv/collector/api"
	"github.com/openriv/riv/internal/cli"
)

const collectorHelp = `The collector is given by --collector: its URL (http://127.0.0.1:P of
"riv-collector dev", https://HOST:PORT of "riv-collector serve"), or the
collector.json that "riv-collector dev" and "serve" write, whose url and
tokens are then used (the read-only token to read, the admin token to
act). --token FILE overrides the token; --ca FILE verifies an HTTPS
collector whose certificate is from a private CA. $RIV_COLLECTOR is the
default of --collector.

Exit status: 0 every device shown is affirming, 1 some device's evidence
failed (warning, contraindicated), 2 bad usage or a request the collector
refused (token, unknown device), 3 the collector, or some device, could
not be reached.`

// collectorFlags are the flags that name a collector.
type collectorFlags struct {
	where, token, ca *string
}

func addCollectorFlags(fs *flag.FlagSet) *collectorFlags {
	return &collectorFlags{
		where: fs.String("collector", os.Getenv("RIV_COLLECTOR"), "the collector's `URL`, or its collector.json FILE"),
		token: fs.String("token", "", "bearer token `FILE` (default: from collector.json)"),
		ca:    fs.String("ca", "", "CA certificates (PEM `FILE`) of an HTTPS collector"),
	}
}

// client returns a client of the collector with the token of the role
// asked for.
func (f *collectorFlags) client(admin bool) (*api.Client, error) {
	where := *f.where
	if where == "" {
		return nil, badInput("no collector: give --collector URL or its collector.json (or set RIV_COLLECTOR)")
	}
	base, token := where, ""
	if !strings.HasPrefix(where, "http://") && !strings.HasPrefix(where, "https://") {
		raw, err := readInput(where)
		if err != nil {
			return nil, err
		}
		var cj struct {
			URL           string `json:"url"`
			AdminToken    string `json:"admin_token"`
			ReadonlyToken string `json:"readonly_token"`
		}
		if err := json.Unmarshal(raw, &cj); err != nil || cj.URL == "" {
			return nil, badInput("%s: not a collector.json (want an object with url and tokens)", where)
		}
		base, token = cj.URL, cj.ReadonlyToken
		if admin {
			token = cj.AdminToken
		}
	}
	if *f.token != "" {
		raw, err := readInput(*f.token)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(raw))
	}
	if token == "" {
		return nil, badInput("no token: give --token FILE (or a collector.json with tokens)")
	}
	var tc *tls.Config
	if *f.ca != "" {
		raw, err := readInput(*f.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, badInput("%s: no PEM certificate", *f.ca)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	c, err := api.NewClient(base, token, tc)
	if err != nil {
		return nil, badInput("%v", err)
	}
	return c, nil
}

// collectorErr classifies a failed request: what the collector refused
// is the caller's (2), a collector not reached or failing is 3.
func collectorErr(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) {
		if se.Status >= 500 {
			return cli.Unreachable("%v", err)
		}
		return badInput("%v", err)
	}
	return cli.Unreachable("collector: %v", err)
}

// deviceCode is the exit code a device's state calls for, with why.
func deviceCode(d api.Device) (int, error) {
	switch {
	case d.State == "unreachable":
		return cli.ExitUnreachable, fmt.Errorf("%s: unreachable: %s", d.Name, d.Error)
	case d.State == "pending" || d.Status == "":
		return cli.ExitUnreachable, fmt.Errorf("%s: not appraised yet", d.Name)
	case d.Status != "affirming":
		err := fmt.Errorf("%s: %s", d.Name, d.Status)
		if len(d.Reasons) > 0 {
			err = fmt.Errorf("%w: %s", err, d.Reasons[0])
		}
		return cli.ExitFailed, err
	}
	return cli.ExitOK, nil
}

// worst returns the error for the devices' highest exit code (nil when
// every one is affirming).
func worst(devs []api.Device) error {
	code, rank, why := cli.ExitOK, 0, error(nil)
	for _, d := range devs {
		// Among the failed, a contraindicated device is named before a
		// warning one.
		r := 0
		if d.Status == "contraindicated" {
			r = 1
		}
		if c, err := deviceCode(d); c > code || (c == code && c != cli.ExitOK && r > rank) {
			code, rank, why = c, r, err
		}
	}
	if code == cli.ExitOK {
		return nil
	}
	if len(devs) > 1 {
		why = fmt.Errorf("%d devices: worst: %w", len(devs), why)
	}
	return &cli.Error{Code: code, Err: why}
}

func verdictWord(d api.Device) string {
	switch {
	case d.State == "unreachable":
		return "UNREACHABLE"
	case d.Status == "":
		return "PENDING"
	}
	return strings.ToUpper(d.Status)
}

func firstReason(d api.Device) string {
	if d.State == "unreachable" {
		return d.Error
	}
	return firstOf(d.Reasons)
}

// firstOf is the first reason of a list, with how many more follow ("" for
// none).
func firstOf(reasons []string) string {
	switch len(reasons) {
	case 0:
		return ""
	case 1:
		return reasons[0]
	}
	return fmt.Sprintf("%s (+%d more)", reasons[0], len(reasons)-1)
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// cmdDevices lists the collector's devices with their latest verdicts.
func cmdDevices(env *cli.Env, args []string) error {
	fs := env.Flags()
	cf := addCollectorFlags(fs)
	asJSON := fs.Bool("json", false, "one JSON object per device and line (the API's)")
	status := fs.String("status", "", "only the devices whose verdict is `STATUS` (affirming, warning, contraindicated, unreachable, pending)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badInput("devices: unexpected %q", fs.Arg(0))
	}
	c, err := cf.client(false)
	if err != nil {
		return err
	}
	devs, err := c.Devices(context.Background())
	if err != nil {
		return collectorErr(err)
	}
	slices.SortFunc(devs, func(a, b api.Device) int { return strings.Compare(a.Name, b.Name) })
	if *status != "" {
		devs = slices.DeleteFunc(devs, func(d api.Device) bool { return !strings.EqualFold(verdictWord(d), *status) })
	}
	if *asJSON {
		for _, d := range devs {
			jsonLine(env.Stdout, d)
		}
		return worst(devs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERIAL\tVERDICT\tAPPRAISED\tRESETS\tREASON")
	for _, d := range devs {
		resets := "-"
		if d.ResetCount != nil {
			resets = fmt.Sprint(*d.ResetCount)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Serial, verdictWord(d), when(d.Appraised), resets, firstReason(d))
	}
	tw.Flush()
	return worst(devs)
}

// cmdDeviceShow prints one device's latest verdict in full.
func cmdDeviceShow(env *cli.Env, args []string) error {
	fs := env.Flags()
	cf := addCollectorFlags(fs)
	asJSON := fs.Bool("json", false, "the API's JSON object")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("device show: want one device NAME")
	}
	c, err := cf.client(false)
	if err != nil {
		return err
	}
	d, err := c.Device(context.Background(), fs.Arg(0))
	if err != nil {
		return collectorErr(err)
	}
	if *asJSON {
		jsonLine(env.Stdout, d)
	} else {
		printDevice(env.Stdout, d)
	}
	return worst([]api.Device{d})
}

func printDevice(out io.Writer, d api.Device) {
	fmt.Fprintf(out, "%s (serial %s): %s\n", d.Name, d.Serial, verdictWord(d))
	fmt.Fprintf(out, "  state %s, %d polls, last appraised %s", d.State, d.Polls, when(d.Appraised))
	if d.ResetCount != nil {
		fmt.Fprintf(out, ", resetCount %d", *d.ResetCount)
	}
	fmt.Fprintln(out)
	if d.Error != "" {
		fmt.Fprintf(out, "  error: %s\n", d.Error)
	}
	if d.TrustVector != nil {
		for _, l := range strings.Split(strings.TrimSpace(d.TrustVector.Report(true, false)), "\n") {
			fmt.Fprintf(out, "  %s\n", strings.TrimSpace(l))
		}
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(out, "  - %s\n", r)
	}
	for _, t := range d.TPMs {
		fmt.Fprintf(out, "  TPM %s: %s\n", t.Name, strings.ToUpper(t.Status))
		for _, r := range t.Reasons {
			fmt.Fprintf(out, "    - %s\n", r)
		}
	}
}

// cmdHistory prints a device's kept appraisals, newest first.
func cmdHistory(env *cli.Env, args []string) error {
	fs := env.Flags()
	cf := addCollectorFlags(fs)
	asJSON := fs.Bool("json", false, "one JSON object per appraisal and line (the API's, with the EAR)")
	limit := fs.Int("limit", 20, "at most `N` appraisals (1 to 10000)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("history: want one device NAME")
	}
	if *limit < 1 || *limit > 10000 {
		return badInput("history: --limit %d: want 1 to 10000", *limit)
	}
	c, err := cf.client(false)
	if err != nil {
		return err
	}
	hist, err := c.History(context.Background(), fs.Arg(0), *limit)
	if err != nil {
		return collectorErr(err)
	}
	if *asJSON {
		for _, h := range hist {
			jsonLine(env.Stdout, h)
		}
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tVERDICT\tRESETS\tPOLICY\tNOTE")
	for _, h := range hist {
		var note []string
		if h.Rebooted {
			note = append(note, "rebooted")
		}
		if h.Superseded != "" {
			note = append(note, "superseded: "+h.Superseded)
		}
		if len(h.Reasons) > 0 {
			note = append(note, firstOf(h.Reasons))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", h.ID, h.Time.UTC().Format(time.RFC3339), strings.ToUpper(h.Status), h.ResetCount, h.Policy, strings.Join(note, "; "))
	}
	tw.Flush()
	// History is a record, not a verdict: listing it succeeded.
	return nil
}

// attestCollector re-attests devices through the collector: the names
// given, or with all every device it polls.
func attestCollector(env *cli.Env, cf *collectorFlags, names []string, all, asJSON bool, parallel int, timeout time.Duration) error {
	c, err := cf.client(true)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch {
	case all && len(names) > 0:
		return badInput("attest: give device names or --all, not both (unexpected %q)", names[0])
	case all:
		devs, err := c.Devices(ctx)
		if err != nil {
			return collectorErr(err)
		}
		for _, d := range devs {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		if len(names) == 0 {
			return badInput("attest: the collector has no devices")
		}
	case len(names) == 0:
		return badInput("attest: with --collector, give device names or --all")
	}
	bar := newBar(env, len(names))
	var mu sync.Mutex
	var got []api.Device
	var refused error // the first request the collector refused
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			actx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			d, err := c.Attest(actx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var se *api.StatusError
				if errors.As(err, &se) && se.Status < 500 && se.Status != 404 {
					if refused == nil {
						refused = collectorErr(err)
					}
					bar.step(name)
					return
				}
				// Not attested (the collector failed, or the device is
				// not known): shown as unreachable, and the run goes on.
				d = api.Device{Name: name, State: "unreachable", Error: err.Error()}
			}
			got = append(got, d)
			// Results are printed as they come (one line each), above the
			// bar on a terminal.
			bar.clear()
			if asJSON {
				jsonLine(env.Stdout, d)
			} else {
				line := fmt.Sprintf("%s (serial %s): %s", d.Name, d.Serial, verdictWord(d))
				if r := firstReason(d); r != "" {
					line += ": " + r
				}
				fmt.Fprintln(env.Stdout, line)
			}
			bar.step(name)
		}()
	}
	wg.Wait()
	bar.clear()
	if refused != nil {
		return refused
	}
	return worst(got)
}

// bar is a progress bar on stderr, drawn only when stderr is a terminal.
type bar struct {
	env       *cli.Env
	total, n  int
	last      string
	startedAt time.Time
}

func newBar(env *cli.Env, total int) *bar {
	b := &bar{env: env, total: total, startedAt: time.Now()}
	b.draw()
	return b
}

func (b *bar) step(name string) { b.n, b.last = b.n+1, name; b.draw() }

func (b *bar) clear() { b.env.EndProgress() }

func (b *bar) draw() {
	if b.n >= b.total {
		return
	}
	const width = 30
	fill := width * b.n / max(1, b.total)
	b.env.Progress("[%s%s] %d/%d %s %s", strings.Repeat("#", fill), strings.Repeat(".", width-fill), b.n, b.total,
		time.Since(b.startedAt).Round(100*time.Millisecond), b.last)
}

// cmdRIMUpload uploads RIMs to the collector, which verifies them before
// use: the signed ones (.cose, .corim) of each directory first, then the
// support RIMs they vouch for.
func cmdRIMUpload(env *cli.Env, args []string) error {
	fs := env.Flags()
	cf := addCollectorFlags(fs)
	asJSON := fs.Bool("json", false, "one JSON object per RIM and line: file, policies, error")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return badInput("rim upload: give RIM files or directories")
	}
	var files []string
	for _, p := range fs.Args() {
		st, err := os.Stat(p)
		if err != nil {
			return badInput("rim upload: %v", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return badInput("rim upload: %v", err)
		}
		var signed, support []string
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			f := filepath.Join(p, e.Name())
			if ext := filepath.Ext(f); ext == ".cose" || ext == ".corim" {
				signed = append(signed, f)
			} else {
				support = append(support, f)
			}
		}
		files = append(append(files, signed...), support...)
	}
	if len(files) == 0 {
		return badInput("rim upload: no files in %s", strings.Join(fs.Args(), " "))
	}
	c, err := cf.client(true)
	if err != nil {
		return err
	}
	bar := newBar(env, len(files))
	rejected := 0
	var firstRejected error
	for _, f := range files {
		raw, err := readInput(f)
		if err != nil {
			bar.clear()
			return err
		}
		n, err := c.UploadRIM(context.Background(), filepath.Base(f), raw)
		var se *api.StatusError
		switch {
		case err == nil:
		case errors.As(err, &se) && se.Status == 422:
			// The collector verified it and refused it: this RIM failed.
			rejected++
			if firstRejected == nil {
				firstRejected = fmt.Errorf("%s: %s", f, se.Message)
			}
		default:
			bar.clear()
			return collectorErr(fmt.Errorf("%s: %w", f, err))
		}
		bar.clear()
		switch {
		case *asJSON:
			v := map[string]any{"file": f, "policies": n}
			if err != nil {
				v["error"] = se.Message
			}
			jsonLine(env.Stdout, v)
		case err != nil:
			fmt.Fprintf(env.Stdout, "%s: REJECTED: %s\n", f, se.Message)
		default:
			fmt.Fprintf(env.Stdout, "%s: accepted by %d policy sets\n", f, n)
		}
		bar.step(filepath.Base(f))
	}
	bar.clear()
	if rejected > 0 {
		return cli.Failed("rim upload: %d of %d RIMs rejected: first: %v", rejected, len(files), firstRejected)
	}
	return nil
}

// jsonLine writes v as one line of JSON.
func jsonLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}
