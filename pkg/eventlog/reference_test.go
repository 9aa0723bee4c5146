package eventlog

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// expectedCase is a UEFI log with PCR values from an independent source.
type expectedCase struct {
	name string
	log  string
	want pcr.Values
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// uefiExpected collects every UEFI log in the reference set that comes
// with expected PCRs: go-tpm-tools *.pcrs.json, tpm2-tools *.yaml "pcrs:"
// and HIRS *ExpectedPcrs.txt.
func uefiExpected(t testing.TB) []expectedCase {
	t.Helper()
	var out []expectedCase
	dir := testref.Path(t, "eventlogs/uefi")

	js, _ := filepath.Glob(filepath.Join(dir, "go-tpm-tools", "*.pcrs.json"))
	for _, f := range js {
		var v struct {
			Log  string     `json:"log"`
			PCRs pcr.Values `json:"pcrs"`
		}
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, expectedCase{name: "go-tpm-tools/" + v.Log, log: filepath.Join(dir, "go-tpm-tools", v.Log), want: v.PCRs})
	}

	ys, _ := filepath.Glob(filepath.Join(dir, "tpm2-tools", "*.bin.yaml"))
	for _, f := range ys {
		want := pcr.Values{}
		b, _ := os.ReadFile(f)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		in, bank := false, alg.ID(0)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "pcrs:":
				in = true
			case !in:
			case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") && strings.HasSuffix(line, ":"):
				var err error
				if bank, err = alg.ParseHash(strings.TrimSpace(strings.TrimSuffix(line, ":"))); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			case strings.HasPrefix(line, "    "):
				k, v, _ := strings.Cut(line, ":")
				idx, err := strconv.Atoi(strings.TrimSpace(k))
				if err != nil {
					t.Fatalf("%s: %q", f, line)
				}
				want.Set(bank, idx, mustHex(t, strings.TrimSpace(v)))
			default:
				in = false
			}
		}
		if len(want) == 0 {
			continue // specid-vendordata.bin has no events and no pcrs
		}
		out = append(out, expectedCase{name: "tpm2-tools/" + filepath.Base(f), log: strings.TrimSuffix(f, ".yaml"), want: want})
	}

	for _, c := range []struct{ log, txt string }{{"TpmLog.bin", "TpmLogExpectedPcrs.txt"}, {"TpmLogSHA1.bin", "TpmLogSHA1ExpectedPcrs.txt"}} {
		want := readHIRSPCRs(t, filepath.Join(dir, "hirs", c.txt))
		out = append(out, expectedCase{name: "hirs/" + c.log, log: filepath.Join(dir, "hirs", c.log), want: want})
	}
	return out
}

func readHIRSPCRs(t testing.TB, path string) pcr.Values {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := pcr.Values{}
	for i, line := range strings.Fields(string(b)) {
		v := mustHex(t, line)
		bank := bankForSize(len(v))
		want.Set(bank, i, v)
	}
	return want
}

func TestUEFIReplayMatchesExpected(t *testing.T) {
	cases := uefiExpected(t)
	if len(cases) < 20 {
		t.Fatalf("found %d UEFI logs with expected PCRs, want at least 20", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := os.ReadFile(c.log)
			if err != nil {
				t.Fatal(err)
			}
			l, err := Parse(raw, FormatAuto)
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if l.Format != FormatTCG {
				t.Fatalf("detected %v, want tcg", l.Format)
			}
			res, err := l.Verify(c.want)
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if !res.OK() {
				t.Errorf("replay mismatch:\n%s", strings.Join(res.Mismatches, "\n"))
			}
			if len(res.Quirks) > 0 {
				t.Errorf("strict replay needed quirks %v", res.Quirks)
			}
		})
	}
}

func TestAlteredLogsDoNotReplay(t *testing.T) {
	want := readHIRSPCRs(t, testref.Path(t, "eventlogs/uefi/hirs/TpmLogExpectedPcrs.txt"))
	l, err := ParseTCG(testref.Read(t, "eventlogs/uefi/hirs/TPMLog_Altered.bin"))
	if err != nil {
		t.Fatalf("ParseTCG(altered) = %v; it is well-formed, only its content changed", err)
	}
	res, err := l.Verify(want)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() {
		t.Error("TPMLog_Altered.bin replays to TpmLog's expected PCRs")
	}

	// keylime's bogus log is 34 bytes of garbage: no PCR values can come of it.
	if l, err := Parse(testref.Read(t, "eventlogs/uefi/keylime/binary_bios_measurements-bogus.bin"), FormatAuto); err == nil {
		got, err := l.Replay(ReplayOptions{})
		if err == nil && len(got) > 0 {
			t.Errorf("bogus log replayed to %v", got)
		}
	}
}

// TestUEFISmoke parses and replays every other UEFI log of the set.
func TestUEFISmoke(t *testing.T) {
	files, _ := filepath.Glob(testref.Path(t, "eventlogs/uefi/*/*.bin"))
	for _, f := range files {
		if strings.Contains(f, "bogus") || strings.Contains(f, "short_no_action") || strings.Contains(f, "specid-vendordata") {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			raw, _ := os.ReadFile(f)
			l, err := ParseTCG(raw)
			if err != nil {
				t.Fatalf("ParseTCG() = %v", err)
			}
			vals, err := l.Replay(ReplayOptions{})
			if err != nil {
				t.Fatalf("Replay() = %v", err)
			}
			if len(vals) != len(l.Banks) {
				t.Errorf("replayed %d banks, log has %v", len(vals), l.Banks)
			}
			// Every digest the specs define by the event data agrees with
			// it on genuine firmware (the altered HIRS log excepted).
			if n := l.CheckDigests(); n != 0 && !strings.Contains(f, "Altered") {
				for _, e := range l.Events {
					if e.Anomaly != "" {
						t.Errorf("event %d (PCR %d, %s): %s", e.Seq, e.PCR, e.TypeName(), e.Anomaly)
					}
				}
			}
		})
	}
	// keylime's base64-wrapped log.
	b64 := testref.Read(t, "eventlogs/uefi/keylime/mb_log.b64")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTCG(raw); err != nil {
		t.Errorf("ParseTCG(mb_log) = %v", err)
	}
}

func TestEdgeLogs(t *testing.T) {
	// A single EV_NO_ACTION: parses, replays to nothing.
	l, err := ParseTCG(testref.Read(t, "eventlogs/uefi/go-attestation/short_no_action_eventlog.bin"))
	if err != nil {
		t.Fatalf("ParseTCG(short_no_action) = %v", err)
	}
	if got, _ := l.Replay(ReplayOptions{}); len(got) != 0 {
		t.Errorf("short_no_action replayed to %v, want nothing", got)
	}
	// tpm2-tools' vendor-info fixture declares an eventSize of 37 bytes
	// but puts 4 bytes of vendor info after them: strict parsing rejects it
	// and says where.
	_, err = ParseTCG(testref.Read(t, "eventlogs/uefi/tpm2-tools/specid-vendordata.bin"))
	if err == nil || !strings.Contains(err.Error(), "vendorInfo") {
		t.Errorf("ParseTCG(specid-vendordata) = %v, want a vendorInfo error", err)
	}
}

func TestIMAReplayIBMAllBanks(t *testing.T) {
	var golden struct {
		PCRs pcr.Values `json:"pcrs"`
	}
	if err := json.Unmarshal(testref.Read(t, "eventlogs/ima/ibmtss/pcr10.json"), &golden); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"binary_runtime_measurements_sha1.bin", "binary_runtime_measurements_sha256.bin"} {
		t.Run(f, func(t *testing.T) {
			l, err := Parse(testref.Read(t, "eventlogs/ima/ibmtss", f), FormatAuto)
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if l.Format != FormatIMA || len(l.Events) != 362 {
				t.Fatalf("format %v with %d entries, want ima with 362", l.Format, len(l.Events))
			}
			got, err := l.Replay(ReplayOptions{Banks: golden.PCRs.Banks()})
			if err != nil {
				t.Fatal(err)
			}
			if diff := got.Diff(golden.PCRs); diff != nil {
				t.Errorf("replay mismatch:\n%s", strings.Join(diff, "\n"))
			}
			if n := l.CheckDigests(); n != 0 {
				t.Errorf("%d template digests do not match their data", n)
			}
			res, err := l.Verify(golden.PCRs)
			if err != nil || !res.OK() || len(res.Quirks) != 0 {
				t.Errorf("Verify() = %+v, %v", res, err)
			}
		})
	}
}

func TestIMAPadRuleDetected(t *testing.T) {
	l, err := ParseIMA(testref.Read(t, "eventlogs/ima/ibmtss/binary_runtime_measurements_sha1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// Build what a pre-5.8 kernel would have put into the SHA-256 bank.
	old, err := l.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA256}, IMAPadSHA1: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.DetectIMARule(alg.SHA256, old); got != "pad-sha1" {
		t.Errorf("DetectIMARule(old kernel) = %q, want pad-sha1", got)
	}
	res, err := l.Verify(old)
	if err != nil || !res.OK() || len(res.Quirks) != 1 {
		t.Errorf("Verify(old kernel PCRs) = %+v, %v; want OK with the padding quirk named", res, err)
	}
}

func TestCharraASCIIEqualsBinary(t *testing.T) {
	bin, err := ParseIMA(testref.Read(t, "eventlogs/ima/charra/binary_runtime_measurements"))
	if err != nil {
		t.Fatalf("ParseIMA() = %v", err)
	}
	asc, err := ParseIMAASCII(testref.Read(t, "eventlogs/ima/charra/ascii_runtime_measurements"))
	if err != nil {
		t.Fatalf("ParseIMAASCII() = %v", err)
	}
	if len(asc.Events) != 1646 || len(bin.Events) != 1650 {
		t.Fatalf("ascii %d entries, binary %d; want 1646 and 1650", len(asc.Events), len(bin.Events))
	}
	type entry struct {
		PCR      int
		Digest   string
		Template string
		Data     string
	}
	conv := func(e *Event) entry {
		return entry{e.PCR, hex.EncodeToString(e.Digests[0].Value), e.IMA.Template, hex.EncodeToString(e.Data)}
	}
	for i := range asc.Events {
		if diff := cmp.Diff(conv(&bin.Events[i]), conv(&asc.Events[i])); diff != "" {
			t.Fatalf("entry %d differs (-binary +ascii):\n%s", i, diff)
		}
	}
	// Both replay to the same PCR 10 over the shared prefix.
	short := &Log{Format: FormatIMA, Banks: bin.Banks, Events: bin.Events[:1646]}
	a, _ := asc.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA1, alg.SHA256}})
	b, _ := short.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA1, alg.SHA256}})
	if !a.Equal(b) {
		t.Error("ascii and binary logs replay differently")
	}
}

func TestKeylimeIMALogs(t *testing.T) {
	for _, c := range []struct {
		file string
		bank alg.ID
	}{{"ima-log-sha1.txt", alg.SHA1}, {"ima-log-sha256.txt", alg.SHA1}, {"ima-log-sha384.txt", alg.SHA1}, {"ima-log-sha512.txt", alg.SHA1}, {"ima-log-sm3_256.txt", alg.SM3_256}} {
		l, err := Parse(testref.Read(t, "eventlogs/ima/keylime", c.file), FormatAuto)
		if err != nil {
			t.Errorf("Parse(%s) = %v", c.file, err)
			continue
		}
		if l.Format != FormatIMAASCII || len(l.Events) != 2 || l.Banks[0] != c.bank {
			t.Errorf("Parse(%s): %v, %d entries, bank %v", c.file, l.Format, len(l.Events), l.Banks)
		}
		if got := l.Events[1].IMA.FileName; got != "/data" {
			t.Errorf("Parse(%s) file name = %q", c.file, got)
		}
		if _, err := l.Replay(ReplayOptions{}); err != nil {
			t.Errorf("Replay(%s) = %v", c.file, err)
		}
	}
	_, err := Parse(testref.Read(t, "eventlogs/ima/keylime/ima-log-unknown.txt"), FormatAuto)
	if err == nil || !strings.Contains(err.Error(), `"unknown"`) {
		t.Errorf("Parse(unknown hash) = %v, want an error naming the algorithm", err)
	}
}

func TestIMATemplates(t *testing.T) {
	l, err := ParseIMA(testref.Read(t, "eventlogs/ima/ibmtss/imatest-templates.bin"))
	if err != nil {
		t.Fatalf("ParseIMA() = %v", err)
	}
	seen := map[string]bool{}
	for _, e := range l.Events {
		seen[e.IMA.Template] = true
	}
	for _, want := range []string{"ima", "ima-ng", "ima-sig", "ima-buf"} {
		if !seen[want] {
			t.Errorf("template %s not seen (saw %v)", want, seen)
		}
	}
	if n := l.CheckDigests(); n != 0 {
		for _, e := range l.Events {
			if e.Anomaly != "" {
				t.Logf("%d %s: %s", e.Seq, e.IMA.Template, e.Anomaly)
			}
		}
		t.Errorf("%d template digests do not match", n)
	}
}

func TestCELReference(t *testing.T) {
	b64 := testref.Read(t, "eventlogs/cel/go-tpm-tools-cos-launcher-cel.b64")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(raw, FormatAuto)
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	if l.Format != FormatCELTLV || len(l.Events) != 18 {
		t.Fatalf("%v with %d records, want cel-tlv with 18", l.Format, len(l.Events))
	}
	if n := l.CheckDigests(); n != 0 {
		t.Errorf("%d CEL records do not match their content", n)
	}
	for _, e := range l.Events {
		if e.IndexType != 108 || e.Register != 4 {
			t.Errorf("record %d: index type %d register %d", e.Seq, e.IndexType, e.Register)
		}
	}
	if got := l.ReplayIndex(108, alg.SHA384); len(got) != 1 || len(got[4]) != 48 {
		t.Errorf("ReplayIndex = %x", got)
	}
	// Tampering with content is flagged.
	bad := bytes.Clone(raw)
	bad[len(bad)-1] ^= 1
	lb, err := ParseCELTLV(bad)
	if err != nil {
		t.Fatal(err)
	}
	if lb.CheckDigests() != 1 || lb.Events[len(lb.Events)-1].Anomaly == "" {
		t.Error("altered CEL content not flagged")
	}
}

// TestReplayFromContinues splits real logs at several points: replaying
// the tail From the head's values must equal replaying the whole log, in
// every bank (the collector replays only the entries it has not seen).
func TestReplayFromContinues(t *testing.T) {
	logs := []string{"eventlogs/ima/ibmtss/binary_runtime_measurements_sha256.bin"}
	for _, c := range uefiExpected(t) {
		logs = append(logs, c.log)
	}
	for _, f := range logs {
		raw, err := os.ReadFile(f)
		if err != nil {
			raw = testref.Read(t, f)
		}
		l, err := Parse(raw, FormatAuto)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		banks := []alg.ID{alg.SHA1, alg.SHA256}
		if l.Format != FormatIMA {
			banks = l.Banks
		}
		want, err := l.Replay(ReplayOptions{Banks: banks})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		n := len(l.Events)
		for _, at := range []int{0, 1, n / 3, n / 2, n - 1, n} {
			head, tail := *l, *l
			head.Events, tail.Events = l.Events[:at], l.Events[at:]
			hv, err := head.Replay(ReplayOptions{Banks: banks})
			if err != nil {
				t.Fatalf("%s: head: %v", f, err)
			}
			got, err := tail.Replay(ReplayOptions{Banks: banks, From: hv})
			if err != nil {
				t.Fatalf("%s: tail: %v", f, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s split at %d/%d (-whole +continued):\n%s", filepath.Base(f), at, n, diff)
			}
		}
	}
}
