// Command rivctl is RIV's operator and vendor tool. This build offers the
// offline evidence commands:
//
//	rivctl eventlog replay [--format F] [--bank ALG]... [--json] [--expect PCRS.json] FILE
//	rivctl eventlog show [--format F] [--json] FILE
//	rivctl quote verify --ak FILE --quote FILE --sig FILE --nonce HEX [--pcrs FILE.json] [--eventlog FILE] [--json]
//	rivctl rim sign coswid|corim ... | rim verify | rim show
//
// Exit status: 0 verified/ok, 1 the evidence failed verification, 2 bad
// input or usage (with a one-line reason on stderr).
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  rivctl eventlog replay [--format auto|tcg|ima|ima-ascii|cel-tlv|cel-json|cel-cbor] [--bank ALG]... [--json] [--expect PCRS.json] FILE
  rivctl eventlog show [--format F] [--json] FILE
  rivctl quote verify --ak FILE --quote FILE --sig FILE --nonce HEX [--pcrs FILE.json] [--eventlog FILE] [--json]
  rivctl rim sign coswid --key KEY --cert CHAIN --tag-id UUID --vendor V [--reg-id URI] [--name N --version V]
                         [--supersedes UUID]... [--patches UUID] [--payload-type T --binding-spec S ...] -o OUT [DEVPATH=]FILE...
  rivctl rim sign corim --key KEY --cert CHAIN --tag-id UUID --vendor V --model M --pcrs PCRS.json -o OUT
  rivctl rim verify (--key FILE | --anchors FILE.pem) [--external-aad HEX] [--json] FILE
  rivctl rim show [--json] FILE
  rivctl attest (--endpoints FILE [--transport ssh|tls] | --netconf-ssh ADDR --user U --ssh-key F | --netconf-tls ADDR --tls-cert F --tls-key F)
                --anchors MFR-CA.pem --rim-anchors VENDOR-CA.pem --rims DIR [--json]
`

// Exit codes (DESIGN.md §4).
const (
	exitOK       = 0
	exitFailed   = 1
	exitBadInput = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is bad usage or unreadable input: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badInput(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// failed is evidence that did not verify: exit 1.
type failed struct{ msg string }

func (e failed) Error() string { return e.msg }

func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		// A panic here is a bug, but the contract is a one-line reason and
		// exit 2, never a stack trace for an operator.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "rivctl: internal error: %v\n", r)
			code = exitBadInput
		}
	}()
	if len(args) < 2 && !(len(args) == 1 && args[0] == "attest") {
		fmt.Fprint(stderr, usage)
		return exitBadInput
	}
	if len(args) == 1 {
		args = append(args, "")
	}
	var err error
	switch args[0] + " " + args[1] {
	case "eventlog replay":
		err = cmdReplay(args[2:], stdout)
	case "eventlog show":
		err = cmdShow(args[2:], stdout)
	case "quote verify":
		err = cmdQuoteVerify(args[2:], stdout)
	case "rim sign", "rim verify", "rim show":
		err = cmdRIM(args[1:], stdout)
	default:
		if args[0] == "attest" {
			err = cmdAttest(args[1:], stdout)
			break
		}
		fmt.Fprint(stderr, usage)
		return exitBadInput
	}
	switch e := err.(type) {
	case nil:
		return exitOK
	case failed:
		fmt.Fprintf(stderr, "rivctl: %s\n", e.msg)
		return exitFailed
	default:
		fmt.Fprintf(stderr, "rivctl: %s\n", oneLine(err.Error()))
		return exitBadInput
	}
}

func oneLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

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
