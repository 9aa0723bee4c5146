// Command rivctl is RIV's operator and vendor tool: offline appraisal of
// event logs, quotes and RIMs, RIM signing, attestation of devices over
// NETCONF, and EAR (attestation result) checks. `rivctl --help` lists the
// commands; every command takes --help.
//
// Exit status: 0 verified/affirming, 1 the evidence failed (warning or
// contraindicated), 2 usage or unreadable input, 3 the device could not
// be reached or spoke no protocol we know; with a one-line reason on
// stderr.
package main

import (
	"io"
	"os"

	"github.com/openriv/riv/internal/cli"
)

var app = &cli.App{
	Name:    "rivctl",
	Summary: "RIV operator and vendor tool (remote integrity verification, RFC 9683)",
	Commands: []*cli.Command{
		{Name: "attest", Args: "[flags] [ENDPOINTS.json...] | --collector URL|FILE (--all | NAME...)", Summary: "appraise devices over NETCONF, or have a collector re-attest them", Help: attestHelp, Run: cmdAttest},
		{Name: "eventlog replay", Args: "[--format F] [--bank ALG]... [--json] [--expect PCRS.json] FILE", Summary: "replay an event log into PCR values (and check them)", Run: cmdReplay},
		{Name: "eventlog show", Args: "[--format F] [--json] FILE", Summary: "print an event log's events", Run: cmdShow},
		{Name: "quote verify", Args: "--ak FILE --quote FILE --sig FILE --nonce HEX [--pcrs FILE.json] [--eventlog FILE] [--json]", Summary: "verify a TPM quote's signature, nonce and PCR digest", Run: cmdQuoteVerify},
		{Name: "rim sign coswid", Args: "--key KEY --cert CHAIN --tag-id UUID --vendor V [flags] -o OUT [DEVPATH=]FILE...", Summary: "sign a CoSWID RIM for the files of a package", Run: cmdRIMSign("coswid")},
		{Name: "rim sign corim", Args: "--key KEY --cert CHAIN --tag-id UUID --vendor V --model M --pcrs PCRS.json -o OUT", Summary: "sign a CoRIM of PCR reference values", Run: cmdRIMSign("corim")},
		{Name: "rim verify", Args: "(--key FILE | --anchors FILE.pem) [--external-aad HEX] [--json] FILE", Summary: "verify a signed RIM", Run: cmdRIMVerify},
		{Name: "rim show", Args: "[--json] FILE", Summary: "print a RIM's contents", Run: cmdRIMShow},
		{Name: "devices", Args: "--collector URL|FILE [--status S] [--json]", Summary: "list a collector's devices with their latest verdicts", Help: collectorHelp, Run: cmdDevices},
		{Name: "device show", Args: "--collector URL|FILE [--json] NAME", Summary: "show a device's latest verdict at a collector: trust vector, reasons, TPMs", Help: collectorHelp, Run: cmdDeviceShow},
		{Name: "history", Args: "--collector URL|FILE [--limit N] [--json] NAME", Summary: "list a device's kept appraisals at a collector, newest first", Help: collectorHelp, Run: cmdHistory},
		{Name: "rim upload", Args: "--collector URL|FILE [--json] DIR|FILE...", Summary: "upload RIMs to a collector, which verifies them before use", Help: collectorHelp, Run: cmdRIMUpload},
		{Name: "ear verify", Args: "--key FILE [--json] EAR.jwt", Summary: "verify an EAR's signature and print its verdict", Run: cmdEARVerify},
		{Name: "ear show", Args: "[--json] EAR.jwt", Summary: "print an EAR's claims without verifying it", Run: cmdEARShow},
	},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int { return app.Run(args, stdout, stderr) }

// badInput is bad usage or unreadable input: exit 2.
func badInput(format string, a ...any) error { return cli.Usage(format, a...) }

// maxInput bounds any evidence file read (IMA logs of busy hosts reach tens
// of MiB; nothing legitimate comes near this).
const maxInput = 256 << 20

func readInput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInput+1))
	if err != nil {
		return nil, badInput("read %s: %v", path, err)
	}
	if len(b) > maxInput {
		return nil, badInput("%s: larger than %d MiB", path, maxInput>>20)
	}
	return b, nil
}
