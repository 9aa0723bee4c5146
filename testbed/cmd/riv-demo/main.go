// Command riv-demo shows RIV's evidence libraries working on real data:
// it replays the reference UEFI and IMA logs against their independently
// published PCR values, then boots a real UEFI log into a TPM (the
// in-process simulator, or swtpm), takes a fresh quote with a 32-byte
// nonce and verifies it against the log, and finally shows that a
// tampered log and a replayed nonce are caught.
//
// By default (what `make demo` runs) it starts a fleet of five routers
// instead — each a riv-router process with its own swtpm (a router with
// line cards one per card) and riv-agent serve: clean, a tampered kernel,
// an unknown binary, two line cards, one that reboots every minute — and
// riv-collector dev polling them over NETCONF; it prints the dashboard's
// URL and, every round, the verdicts from the collector's API. See
// fleet.go.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
)

var app = &cli.App{
	Name:    "riv-demo",
	Summary: "RIV on a simulated fleet (or its evidence libraries on real data)",
	Main: &cli.Command{Args: "[--once] [--interval D] [--agent BIN] [--router BIN] [--collector BIN] | --libraries [--reference DIR] [--tpm SPEC]",
		Summary: "start five routers (riv-router on swtpm) and riv-collector dev polling them; print the dashboard's URL and the verdicts",
		Help: `The routers are child processes; they stop with riv-demo, also when it is
killed (they get SIGTERM when their parent dies). --libraries instead
replays the reference logs, boots a log into a TPM and verifies a fresh
quote.`,
		Run: runMain},
}

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }

func runMain(env *cli.Env, args []string) error {
	fs := env.Flags()
	ref := fs.String("reference", "testdata/reference", "reference data `DIR` (the firmware log one router boots; the logs --libraries replays)")
	tpmSpec := fs.String("tpm", "sim", "`TPM` to boot into for --libraries: sim, swtpm:PATH or swtpm:HOST:PORT")
	libraries := fs.Bool("libraries", false, "show the evidence libraries on the reference data instead of the fleet")
	agent := fs.String("agent", "bin/riv-agent", "riv-agent `BINARY` the routers run")
	routerBin := fs.String("router", "bin/riv-router", "riv-router `BINARY` that builds and runs each router")
	collectorBin := fs.String("collector", "bin/riv-collector", "riv-collector `BINARY` that polls them")
	once := fs.Bool("once", false, "one appraisal round, then exit: status 0 when every verdict is the expected one")
	interval := fs.Duration("interval", 10*time.Second, "time between appraisal rounds")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("unexpected argument %q", fs.Arg(0))
	}
	if *libraries {
		return run(*ref, *tpmSpec)
	}
	return runFleet(*routerBin, *agent, *collectorBin, *ref, *once, *interval)
}

func run(ref, tpmSpec string) error {
	if _, err := os.Stat(ref); err != nil {
		return fmt.Errorf("reference data: %w (pass --reference)", err)
	}
	fmt.Println("== 1. Replaying real event logs against their published PCR values")
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LOG\tFORMAT\tEVENTS\tBANKS\tRESULT")
	logs, _ := filepath.Glob(filepath.Join(ref, "eventlogs/uefi/go-tpm-tools/*.pcrs.json"))
	for _, f := range logs {
		var v struct {
			Log  string     `json:"log"`
			PCRs pcr.Values `json:"pcrs"`
		}
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		row(w, filepath.Join(filepath.Dir(f), v.Log), v.PCRs)
	}
	var ima struct {
		PCRs pcr.Values `json:"pcrs"`
	}
	b, _ := os.ReadFile(filepath.Join(ref, "eventlogs/ima/ibmtss/pcr10.json"))
	json.Unmarshal(b, &ima)
	row(w, filepath.Join(ref, "eventlogs/ima/ibmtss/binary_runtime_measurements_sha1.bin"), ima.PCRs)
	w.Flush()

	fmt.Println("\n== 2. Measured boot into a TPM, fresh quote, verification")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logPath := filepath.Join(ref, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-secure-boot.bin")
	raw, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	l, err := eventlog.Parse(raw, eventlog.FormatAuto)
	if err != nil {
		return err
	}
	t, err := tpm.Open(ctx, tpmSpec)
	if err != nil {
		return err
	}
	defer t.Close()
	banks, err := t.Banks(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("TPM %s: banks %v\n", tpmSpec, banks)
	n := 0
	for _, e := range l.Events {
		if e.PCR < 0 || eventlog.EventType(e.Type) == eventlog.EvNoAction {
			continue
		}
		d := map[alg.ID][]byte{}
		for _, b := range banks {
			if v := e.Digest(b); v != nil {
				d[b] = v
			} else {
				// A bank the log lacks still gets a measurement, as firmware would.
				d[b] = b.Sum(e.Data)
			}
		}
		if err := t.Extend(ctx, e.PCR, d); err != nil {
			return err
		}
		n++
	}
	fmt.Printf("booted %s: %d measurements extended into PCRs 0-9 of every bank\n", filepath.Base(logPath), n)
	iak, err := t.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		return err
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, {Bank: alg.SHA384, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}}
	start := time.Now()
	attest, sig, err := t.Quote(ctx, iak, nonce, sel)
	if err != nil {
		return err
	}
	fmt.Printf("TPM2_Quote (ECDSA P-256, sha256+sha384 PCRs 0-9, nonce %x...) took %v\n", nonce[:8], time.Since(start).Round(time.Microsecond))

	replayed, err := l.Replay(eventlog.ReplayOptions{Banks: []alg.ID{alg.SHA256, alg.SHA384}})
	if err != nil {
		return err
	}
	res, err := quote.Verify(iak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: sel, PCRs: replayed})
	if err != nil {
		return fmt.Errorf("fresh quote did not verify against the log: %w", err)
	}
	fmt.Printf("VERIFIED: signature, nonce, selection %v, and the log replays to the quoted PCR digest\n", res.Selection)
	fmt.Printf("          clock %d ms, resetCount %d, restartCount %d, safe %v\n", res.ClockInfo.Clock, res.ClockInfo.ResetCount, res.ClockInfo.RestartCount, res.ClockInfo.Safe)

	fmt.Println("\n== 3. Attacks the verifier must catch")
	tampered := pcr.Values{}
	for _, b := range replayed.Banks() {
		for _, i := range replayed.Indexes(b) {
			tampered.Set(b, i, replayed.Get(b, i))
		}
	}
	tampered[alg.SHA256][4][0] ^= 1 // a different boot loader
	check := func(name string, err error, want error) {
		verdict := "CAUGHT"
		if !errors.Is(err, want) {
			verdict = "MISSED"
		}
		fmt.Printf("%-44s %s: %v\n", name, verdict, err)
	}
	_, err = quote.Verify(iak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: sel, PCRs: tampered})
	check("log claims another boot loader (PCR 4)", err, quote.ErrPCRDigestMismatch)
	fresh := make([]byte, 32)
	rand.Read(fresh)
	_, err = quote.Verify(iak.Public.Key, attest, sig, quote.Options{Nonce: fresh, Selection: sel, PCRs: replayed})
	check("old quote replayed to a new challenge", err, quote.ErrNonceMismatch)
	more := append(append([]pcr.Selection{}, sel...), pcr.Selection{Bank: alg.SM3_256, PCRs: []int{0}})
	_, err = quote.Verify(iak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: more, PCRs: replayed})
	check("quote silently lacks a requested bank", err, quote.ErrSelectionMismatch)
	if strings.Contains(tpmSpec, "sim") {
		fmt.Println("\n(simulator TPM; run with --tpm swtpm:SOCKET for a libtpms TPM)")
	}
	return nil
}

func row(w *tabwriter.Writer, path string, want pcr.Values) {
	name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "%s\t-\t-\t-\tunreadable: %v\n", name, err)
		return
	}
	l, err := eventlog.Parse(raw, eventlog.FormatAuto)
	if err != nil {
		fmt.Fprintf(w, "%s\t-\t-\t-\tparse error: %v\n", name, err)
		return
	}
	res, err := l.Verify(want)
	switch {
	case err != nil:
		fmt.Fprintf(w, "%s\t%v\t%d\t%v\terror: %v\n", name, l.Format, len(l.Events), want.Banks(), err)
	case res.OK():
		n := 0
		for _, b := range want.Banks() {
			n += len(want[b])
		}
		fmt.Fprintf(w, "%s\t%v\t%d\t%v\tOK (%d PCRs match)\n", name, l.Format, len(l.Events), want.Banks(), n)
	default:
		fmt.Fprintf(w, "%s\t%v\t%d\t%v\tMISMATCH %s\n", name, l.Format, len(l.Events), want.Banks(), res.Mismatches[0])
	}
}
