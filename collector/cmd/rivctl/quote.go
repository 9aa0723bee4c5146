package main

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// loadAK reads an attestation key: PEM or DER SubjectPublicKeyInfo, PEM or
// DER certificate, or a binary TPMT_PUBLIC (with or without TPM2B size).
func loadAK(path string) (crypto.PublicKey, error) {
	raw, err := readInput(path)
	if err != nil {
		return nil, err
	}
	der := raw
	if blk, _ := pem.Decode(raw); blk != nil {
		der = blk.Bytes
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		return k, nil
	}
	if c, err := x509.ParseCertificate(der); err == nil {
		return c.PublicKey, nil
	}
	p, err := quote.ParsePublic(raw)
	if err != nil {
		return nil, badInput("%s: not a public key, certificate or TPMT_PUBLIC (%v)", path, err)
	}
	if p.Key == nil {
		return nil, badInput("%s: TPMT_PUBLIC of type %v is not a signing key", path, p.Type)
	}
	return p.Key, nil
}

type quoteJSON struct {
	Verified        bool             `json:"verified"`
	Reason          string           `json:"reason,omitempty"`
	Nonce           string           `json:"nonce"`
	Selection       map[string][]int `json:"selection,omitempty"`
	PCRDigest       string           `json:"pcr_digest,omitempty"`
	SignatureAlg    string           `json:"signature_alg,omitempty"`
	Clock           *quote.ClockInfo `json:"clock_info,omitempty"`
	FirmwareVersion string           `json:"firmware_version,omitempty"`
	EventLog        *eventLogJSON    `json:"eventlog,omitempty"`
}

type eventLogJSON struct {
	Format    string   `json:"format"`
	Events    int      `json:"events"`
	Replays   bool     `json:"replays"`
	Quirks    []string `json:"quirks,omitempty"`
	Anomalies []string `json:"anomalies,omitempty"`
}

func cmdQuoteVerify(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	akPath := fs.String("ak", "", "attestation key")
	quotePath := fs.String("quote", "", "TPMS_ATTEST")
	sigPath := fs.String("sig", "", "TPMT_SIGNATURE")
	nonceHex := fs.String("nonce", "", "nonce in hex")
	pcrsPath := fs.String("pcrs", "", "PCR values (replay JSON)")
	logPath := fs.String("eventlog", "", "event log to replay against the quote")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *akPath == "" || *quotePath == "" || *sigPath == "" || fs.NArg() != 0 {
		return badInput("quote verify: --ak, --quote and --sig are required, and --nonce")
	}
	var nonceSet bool
	fs.Visit(func(f *flag.Flag) { nonceSet = nonceSet || f.Name == "nonce" })
	if !nonceSet {
		return badInput("quote verify: --nonce is required (use --nonce '' for a quote without one)")
	}
	nonce, err := hex.DecodeString(*nonceHex)
	if err != nil {
		return badInput("quote verify: --nonce: %v", err)
	}
	ak, err := loadAK(*akPath)
	if err != nil {
		return err
	}
	attestRaw, err := readInput(*quotePath)
	if err != nil {
		return err
	}
	sigRaw, err := readInput(*sigPath)
	if err != nil {
		return err
	}
	a, err := quote.ParseAttest(attestRaw)
	if err != nil {
		return badInput("%s: %v", *quotePath, err)
	}
	sig, err := quote.ParseSignature(sigRaw)
	if err != nil {
		return badInput("%s: %v", *sigPath, err)
	}
	var vals pcr.Values
	if *pcrsPath != "" {
		raw, err := readInput(*pcrsPath)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &vals); err != nil {
			return badInput("%s: %v", *pcrsPath, err)
		}
	}
	res := quoteJSON{Nonce: hex.EncodeToString(nonce)}
	report := func(reason string) error {
		res.Reason = reason
		if *asJSON {
			b, _ := json.MarshalIndent(res, "", "  ")
			fmt.Fprintf(out, "%s\n", b)
		} else if reason == "" {
			printQuote(out, &res)
		}
		if reason != "" {
			return cli.Failed("%s", reason)
		}
		return nil
	}

	// With an event log, the quoted PCRs must be what the log replays to
	// (and what --pcrs says, if given too).
	if *logPath != "" {
		l, err := loadLog(*logPath, "auto")
		if err != nil {
			return err
		}
		if a.Quote == nil {
			return report(fmt.Sprintf("%v: not a quote", quote.ErrWrongType))
		}
		want := pcr.Values{}
		banks := a.Quote.Selection
		replayed, err := l.Replay(eventlog.ReplayOptions{Banks: selBanks(banks)})
		if err != nil {
			return report(fmt.Sprintf("event log cannot be replayed in the quoted banks: %v", err))
		}
		for _, s := range banks {
			for _, i := range s.PCRs {
				if v := vals.Get(s.Bank, i); v != nil {
					want.Set(s.Bank, i, v)
				} else if v := replayed.Get(s.Bank, i); v != nil {
					want.Set(s.Bank, i, v)
				} else {
					want.Set(s.Bank, i, pcr.Initial(s.Bank, i))
				}
			}
		}
		// Only compare PCRs the log speaks for.
		logWant := pcr.Values{}
		for _, b := range replayed.Banks() {
			for _, i := range replayed.Indexes(b) {
				if v := want.Get(b, i); v != nil {
					logWant.Set(b, i, v)
				}
			}
		}
		vr, err := l.Verify(logWant)
		if err != nil {
			return badInput("%s: %v", *logPath, err)
		}
		res.EventLog = &eventLogJSON{Format: l.Format.String(), Events: len(l.Events), Replays: vr.OK(), Quirks: vr.Quirks, Anomalies: vr.Anomalies}
		if !vr.OK() {
			return report("event log does not replay to the PCR values: " + strings.Join(vr.Mismatches, "; "))
		}
		vals = want
	}
	r, err := quote.VerifyParsed(ak, a, sig, quote.Options{Nonce: nonce, PCRs: vals})
	if err != nil {
		if quote.IsEvidenceError(err) || errors.Is(err, quote.ErrUnsupportedAlg) {
			return report(err.Error())
		}
		return badInput("%v", err)
	}
	res.Verified = true
	res.Selection = map[string][]int{}
	for _, s := range r.Selection {
		res.Selection[s.Bank.String()] = s.PCRs
	}
	res.PCRDigest = hex.EncodeToString(a.Quote.PCRDigest)
	res.SignatureAlg = fmt.Sprintf("%v-%v", sig.Alg, sig.Hash)
	res.Clock = &r.ClockInfo
	res.FirmwareVersion = fmt.Sprintf("0x%016x", a.FirmwareVersion)
	return report("")
}

func selBanks(sel []pcr.Selection) []alg.ID {
	var out []alg.ID
	for _, s := range sel {
		out = append(out, s.Bank)
	}
	return out
}

func printQuote(out io.Writer, r *quoteJSON) {
	fmt.Fprintf(out, "quote verified: %s signature, nonce %s\n", r.SignatureAlg, r.Nonce)
	for b, p := range r.Selection {
		fmt.Fprintf(out, "  %s PCRs %v\n", b, p)
	}
	fmt.Fprintf(out, "  pcrDigest %s\n", r.PCRDigest)
	fmt.Fprintf(out, "  clock %d resetCount %d restartCount %d safe %v firmware %s\n", r.Clock.Clock, r.Clock.ResetCount, r.Clock.RestartCount, r.Clock.Safe, r.FirmwareVersion)
	if r.EventLog != nil {
		fmt.Fprintf(out, "  event log (%s, %d events) replays to the quoted PCRs", r.EventLog.Format, r.EventLog.Events)
		if len(r.EventLog.Quirks) > 0 {
			fmt.Fprintf(out, " with quirks %v", r.EventLog.Quirks)
		}
		fmt.Fprintln(out)
		for _, a := range r.EventLog.Anomalies {
			fmt.Fprintf(out, "  anomaly: %s\n", a)
		}
	}
}
