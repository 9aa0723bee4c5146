package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/pcr"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	R := testref.Dir(t)
	K := filepath.Join(R, "quotes/keylime-checkquote")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	garbage := write("garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000))
	// A TCG header claiming a 4 GiB event must fail fast without allocating.
	huge := write("huge", append(append(make([]byte, 8), make([]byte, 20)...), 0xff, 0xff, 0xff, 0xff))
	tpmLog := filepath.Join(R, "eventlogs/uefi/hirs/TpmLog.bin")
	expected := write("expected.json", mustJSON(t, hirsPCRs(t, filepath.Join(R, "eventlogs/uefi/hirs/TpmLogExpectedPcrs.txt"))))
	goodNonce := "4169354d35536a596a6e6b797634503769744831"

	// gce quote over sha256 PCRs 0-23 with its event log.
	var gce struct {
		AKPub  string `json:"ak_pub_tpmt_public_hex"`
		Quotes []struct {
			Bank   string            `json:"pcr_bank"`
			Attest string            `json:"tpms_attest_hex"`
			Sig    string            `json:"tpmt_signature_hex"`
			PCRs   map[string]string `json:"pcrs"`
		} `json:"quotes"`
	}
	json.Unmarshal(testref.Read(t, "quotes/go-tpm-tools/gce-cos-85-no-nonce.json"), &gce)
	q := gce.Quotes[1]
	akPub := write("ak.tpmt", unhex(t, gce.AKPub))
	gq := write("gce.quote", unhex(t, q.Attest))
	gs := write("gce.sig", unhex(t, q.Sig))
	gl := filepath.Join(R, "quotes/go-tpm-tools/gce-cos-85-no-nonce.eventlog.bin")
	qv := pcr.Values{}
	for i, v := range q.PCRs {
		var idx int
		json.Unmarshal([]byte(i), &idx)
		qv.Set(0x000B, idx, unhex(t, v))
	}
	gp := write("gce.pcrs.json", mustJSON(t, qv))
	altered := filepath.Join(R, "eventlogs/uefi/hirs/TPMLog_Altered.bin")

	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{"replay json", []string{"eventlog", "replay", "--json", tpmLog}, 0, `"sha256":{"0":"5ef6c69a`, ""},
		{"replay expect ok", []string{"eventlog", "replay", "--expect", expected, tpmLog}, 0, "sha256:", ""},
		{"replay expect altered", []string{"eventlog", "replay", "--expect", expected, altered}, 1, "", "does not replay"},
		{"replay missing bank", []string{"eventlog", "replay", "--bank", "sha384", tpmLog}, 2, "", "sha384"},
		{"replay garbage", []string{"eventlog", "replay", garbage}, 2, "", "unrecognised"},
		{"replay huge length", []string{"eventlog", "replay", "--format", "tcg", huge}, 2, "", "malformed"},
		{"replay no file", []string{"eventlog", "replay", filepath.Join(dir, "nope")}, 2, "", "no such file"},
		{"replay bad format", []string{"eventlog", "replay", "--format", "xml", tpmLog}, 2, "", "unknown log format"},
		{"show", []string{"eventlog", "show", tpmLog}, 0, "EV_SEPARATOR", ""},
		{"show json ima", []string{"eventlog", "show", "--json", filepath.Join(R, "eventlogs/ima/keylime/ima-log-sha256.txt")}, 0, `"file":"/data"`, ""},
		{"quote ok", []string{"quote", "verify", "--ak", K + "/ak.pem", "--quote", K + "/quote.bin", "--sig", K + "/sig.bin", "--nonce", goodNonce}, 0, "quote verified", ""},
		{"quote wrong nonce", []string{"quote", "verify", "--ak", K + "/ak.pem", "--quote", K + "/quote.bin", "--sig", K + "/sig.bin", "--nonce", "00"}, 1, "", "nonce"},
		{"quote json", []string{"quote", "verify", "--json", "--ak", K + "/ak.pem", "--quote", K + "/quote.bin", "--sig", K + "/sig.bin", "--nonce", goodNonce}, 0, `"verified": true`, ""},
		{"quote bad nonce hex", []string{"quote", "verify", "--ak", K + "/ak.pem", "--quote", K + "/quote.bin", "--sig", K + "/sig.bin", "--nonce", "zz"}, 2, "", "--nonce"},
		{"quote garbage", []string{"quote", "verify", "--ak", K + "/ak.pem", "--quote", garbage, "--sig", K + "/sig.bin", "--nonce", goodNonce}, 2, "", "magic"},
		{"quote tpmt ak with log", []string{"quote", "verify", "--ak", akPub, "--quote", gq, "--sig", gs, "--nonce", "", "--pcrs", gp, "--eventlog", gl}, 0, "replays", ""},
		{"quote log without pcrs", []string{"quote", "verify", "--ak", akPub, "--quote", gq, "--sig", gs, "--nonce", "", "--eventlog", gl}, 1, "", "PCR digest"},
		{"quote with wrong log", []string{"quote", "verify", "--ak", akPub, "--quote", gq, "--sig", gs, "--nonce", "", "--pcrs", gp, "--eventlog", tpmLog}, 1, "", "does not replay"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"no command", nil, 2, "", "Usage:"},
		{"help", []string{"--help"}, 0, "rivctl ear verify", ""},
		{"help command", []string{"help", "quote", "verify"}, 0, "Usage: rivctl quote verify", ""},
		{"group help", []string{"eventlog", "--help"}, 0, "rivctl eventlog show", ""},
		{"group without subcommand", []string{"rim"}, 2, "", "a subcommand is required"},
		{"unknown subcommand", []string{"rim", "frob"}, 2, "", `unknown subcommand "frob"`},
		{"version", []string{"version"}, 0, "rivctl ", ""},
		{"bad flag", []string{"eventlog", "show", "--frob", tpmLog}, 2, "", "eventlog show: flag provided but not defined: -frob (see --help)"},
		// F.7: an expectation that checks nothing is an error.
		{"replay expect nothing", []string{"eventlog", "replay", "--expect", write("empty.json", []byte("{}")), tpmLog}, 2, "", "no PCR values to check"},
		{"replay expect empty bank", []string{"eventlog", "replay", "--expect", write("emptybank.json", []byte(`{"sha256":{}}`)), tpmLog}, 2, "", "no PCR values to check"},
		// F.4: a stray argument is an error, never ignored.
		{"attest stray argument", []string{"attest", "--netconf-ssh", "127.0.0.1:1", "--anchors", tpmLog, "--rim-anchors", tpmLog, "--rims", dir, "extra"}, 2, "", `unexpected "extra"`},
		{"attest no target", []string{"attest"}, 2, "", "no target"},
		{"attest unreadable endpoints", []string{"attest", filepath.Join(dir, "nope.json")}, 2, "", "nope.json"},
		{"attest bad transport", []string{"attest", "--transport", "telnet", tpmLog}, 2, "", "--transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.err) {
				t.Errorf("rivctl %v = %d\nstdout: %s\nstderr: %s\nwant %d, stdout ~ %q, stderr ~ %q", tt.args, code, out, errs, tt.code, tt.out, tt.err)
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(errs), "\n") > 0 && tt.name != "no command" && tt.name != "group without subcommand" {
				t.Errorf("stderr is not one line: %q", errs)
			}
		})
	}
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hirsPCRs(t *testing.T, path string) pcr.Values {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := pcr.Values{}
	for i, l := range strings.Fields(string(b)) {
		v.Set(0x000B, i, unhex(t, l))
	}
	return v
}

// TestEveryCommandHelp (F.2): --help on every command prints its usage,
// its flags and the exit codes to stdout and exits 0.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range app.Commands {
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.Name), h)
			code, out, errs := runCLI(args...)
			if code != 0 || errs != "" || !strings.Contains(out, "Usage: rivctl "+c.Name) || !strings.Contains(out, "Exit status:") {
				t.Errorf("rivctl %v = %d\nstdout: %s\nstderr: %s", args, code, out, errs)
			}
		}
	}
}
