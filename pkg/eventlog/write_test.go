package eventlog

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

func TestWriteTCGRoundTrip(t *testing.T) {
	for _, f := range []string{"eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin", "eventlogs/uefi/hirs/TpmLog.bin"} {
		l, err := ParseTCG(testref.Read(t, f))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := l.Replay(ReplayOptions{})
		out, err := WriteTCG(l)
		if err != nil {
			t.Fatalf("WriteTCG(%s) = %v", f, err)
		}
		l2, err := ParseTCG(out)
		if err != nil {
			t.Fatalf("ParseTCG(written %s) = %v", f, err)
		}
		got, _ := l2.Replay(ReplayOptions{})
		if !got.Equal(want) {
			t.Errorf("%s: written log replays differently:\n%s", f, strings.Join(got.Diff(want), "\n"))
		}
		if len(l2.Events) != len(l.Events) {
			t.Errorf("%s: %d events written, %d read", f, len(l2.Events), len(l.Events))
		}
	}
}

func TestWriteIMARoundTrip(t *testing.T) {
	l, err := ParseIMA(testref.Read(t, "eventlogs/ima/ibmtss/binary_runtime_measurements_sha1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	banks := []alg.ID{alg.SHA1, alg.SHA256}
	want, _ := l.Replay(ReplayOptions{Banks: banks})
	bin, err := WriteIMA(l.Events, alg.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bin, testref.Read(t, "eventlogs/ima/ibmtss/binary_runtime_measurements_sha1.bin")) {
		t.Error("WriteIMA(parsed log) is not byte-identical to the original")
	}
	asc, err := WriteIMAASCII(l.Events, alg.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	la, err := ParseIMAASCII(asc)
	if err != nil {
		t.Fatalf("ParseIMAASCII(written) = %v", err)
	}
	got, _ := la.Replay(ReplayOptions{Banks: banks})
	if !got.Equal(want) {
		t.Errorf("ASCII round trip replays differently:\n%s", strings.Join(got.Diff(want), "\n"))
	}

	// A log made by the writer for a simulated router.
	var events []Event
	for i, name := range []string{"boot_aggregate", "/usr/bin/bgpd", "/etc/frr/frr.conf"} {
		events = append(events, IMAEntryFor(10, alg.SHA256, alg.SHA256.Sum([]byte(name)), name, nil, []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384}))
		_ = i
	}
	raw, err := WriteIMA(events, alg.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	l3, err := ParseIMA(raw)
	if err != nil {
		t.Fatal(err)
	}
	if l3.Events[1].IMA.FileName != "/usr/bin/bgpd" || l3.Events[1].IMA.FileHashAlg != alg.SHA256 {
		t.Errorf("written entry read back as %+v", l3.Events[1].IMA)
	}
	// Replaying the SHA-384 bank from SHA-1 template digests must give what
	// extending the writer's own SHA-384 template digests gives.
	v384 := alg.SHA384.Size()
	cur := make([]byte, v384)
	for _, e := range events {
		cur = pcr.Extend(alg.SHA384, cur, e.Digest(alg.SHA384))
	}
	got3, _ := l3.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA384}})
	if !bytes.Equal(got3.Get(alg.SHA384, 10), cur) {
		t.Errorf("sha384 PCR 10 = %x, want %x", got3.Get(alg.SHA384, 10), cur)
	}
}

func TestCELRoundTrip(t *testing.T) {
	src := map[string]*Log{}
	l, err := ParseTCG(testref.Read(t, "eventlogs/uefi/go-tpm-tools/cos-101-amd-sev.bin"))
	if err != nil {
		t.Fatal(err)
	}
	src["tcg"] = l
	li, err := ParseIMA(testref.Read(t, "eventlogs/ima/ibmtss/binary_runtime_measurements_sha256.bin"))
	if err != nil {
		t.Fatal(err)
	}
	src["ima"] = li
	for name, l := range src {
		want, err := l.Replay(ReplayOptions{Banks: l.Banks[:1]})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []Format{FormatCELTLV, FormatCELJSON, FormatCELCBOR} {
			t.Run(name+"-"+f.String(), func(t *testing.T) {
				out, err := WriteCEL(l, f)
				if err != nil {
					t.Fatalf("WriteCEL() = %v", err)
				}
				got, err := Parse(out, FormatAuto)
				if err != nil {
					t.Fatalf("Parse(written CEL) = %v", err)
				}
				if got.Format != f {
					t.Errorf("detected %v, want %v", got.Format, f)
				}
				vals, err := got.Replay(ReplayOptions{Banks: l.Banks[:1]})
				if err != nil {
					t.Fatal(err)
				}
				if !vals.Equal(want) {
					t.Errorf("CEL replays differently:\n%s", strings.Join(vals.Diff(want), "\n"))
				}
				got.CheckDigests()
				for _, e := range got.Events {
					if e.Anomaly != "" {
						t.Errorf("record %d: %s", e.Seq, e.Anomaly)
						break
					}
				}
			})
		}
	}
	// NV-index records replay separately from PCRs.
	nv := `[{"recnum":0,"nv_index":25165824,"digests":[{"hashAlg":"sha256","digest":"` + strings.Repeat("ab", 32) + `"}],"content_type":"type_80","content":"aGVsbG8="}]`
	ln, err := ParseCELJSON([]byte(nv))
	if err != nil {
		t.Fatalf("ParseCELJSON(nv) = %v", err)
	}
	if got := ln.ReplayIndex(celNVIndex, alg.SHA256); len(got[25165824]) != 32 {
		t.Errorf("ReplayIndex(nv) = %x", got)
	}
	if v, _ := ln.Replay(ReplayOptions{}); len(v) != 0 {
		t.Errorf("NV record extended a PCR: %v", v)
	}
}

func TestSecureBoot(t *testing.T) {
	l, err := ParseTCG(testref.Read(t, "eventlogs/uefi/go-attestation/sb_cert_eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sb := l.SecureBoot()
	if !sb.Enabled || len(sb.PK) == 0 || len(sb.KEK) == 0 || len(sb.DB) == 0 || len(sb.DBX) == 0 || len(sb.Authorities) == 0 {
		t.Fatalf("SecureBoot() = enabled %v, PK %d KEK %d db %d dbx %d authorities %d, problems %v",
			sb.Enabled, len(sb.PK), len(sb.KEK), len(sb.DB), len(sb.DBX), len(sb.Authorities), sb.Problems)
	}
	var subjects []string
	for _, e := range sb.DB {
		if e.Type == "x509" {
			subjects = append(subjects, e.Subject)
		}
	}
	if !strings.Contains(strings.Join(subjects, "|"), "Microsoft") {
		t.Errorf("db certificates %v lack the Microsoft CA", subjects)
	}
	off, err := ParseTCG(testref.Read(t, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-secure-boot.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if off.SecureBoot().Enabled {
		t.Error("secure boot reported on for a log with it off")
	}
	// arch-linux: upstream notes "SecureBoot data len is 0"; not a crash.
	arch, _ := ParseTCG(testref.Read(t, "eventlogs/uefi/go-tpm-tools/arch-linux-workstation.bin"))
	if arch.SecureBoot().Enabled {
		t.Error("arch-linux workstation reported secure boot on")
	}
	for _, l := range []*Log{l, off, arch} {
		sb := l.SecureBoot()
		if on, conflicts := l.SecureBootMode(); on != sb.Enabled || !slices.Equal(conflicts, sb.Conflicts) {
			t.Errorf("SecureBootMode() = %v %q, SecureBoot() = %v %q", on, conflicts, sb.Enabled, sb.Conflicts)
		}
	}
}

// TestQuirkEBS drops the ExitBootServices actions from a log whose PCR 5
// includes them: strict replay fails, and the quirk that explains it is
// named.
func TestQuirkEBS(t *testing.T) {
	l, err := ParseTCG(testref.Read(t, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA256}})
	var kept []Event
	dropped := 0
	for _, e := range l.Events {
		if EventType(e.Type) == EvEFIAction && e.PCR == 5 && strings.HasPrefix(string(e.Data), "Exit Boot Services") {
			dropped++
			continue
		}
		kept = append(kept, e)
	}
	if dropped != 2 {
		t.Fatalf("found %d EBS events, want 2", dropped)
	}
	cut := *l
	cut.Events = kept
	res, err := cut.Verify(want)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Quirks) != 1 || !strings.HasPrefix(res.Quirks[0], "ebs-invocation-success-not-logged") {
		t.Errorf("Verify(log without EBS events) = OK %v, quirks %v, mismatches %v", res.OK(), res.Quirks, res.Mismatches)
	}
	// A log that really lacks something in PCR 4 is not rescued by quirks.
	bad := make([]Event, len(kept))
	copy(bad, kept)
	for i := range bad {
		if bad[i].PCR == 4 {
			bad = append(bad[:i], bad[i+1:]...)
			break
		}
	}
	cut.Events = bad
	res, _ = cut.Verify(want)
	if res.OK() {
		t.Error("a log missing a PCR 4 event verified")
	}
}

// TestStartupLocality writes a log with a StartupLocality event of 3 and
// an H-CRTM event and checks PCR 0 starts at 0x..03.
func TestStartupLocality(t *testing.T) {
	banks := []alg.ID{alg.SHA256, alg.SHA384}
	ev := func(pcrIdx int, typ EventType, data []byte) Event {
		e := Event{PCR: pcrIdx, Type: uint32(typ), Data: data}
		for _, b := range banks {
			d := b.Sum(data)
			if typ == EvNoAction {
				d = make([]byte, b.Size())
			}
			e.Digests = append(e.Digests, Digest{Alg: b, Value: d})
		}
		return e
	}
	l := &Log{Format: FormatTCG, Banks: banks, Events: []Event{
		ev(0, EvNoAction, append([]byte(startupLoc), 3)),
		ev(0, EvEFIHCRTMEvent, []byte("HCRTM")),
		ev(0, EvSeparator, []byte{0, 0, 0, 0}),
	}}
	raw, err := WriteTCG(l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTCG(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.StartupLocality != 3 {
		t.Fatalf("StartupLocality = %d, want 3", got.StartupLocality)
	}
	vals, _ := got.Replay(ReplayOptions{})
	for _, b := range banks {
		init := make([]byte, b.Size())
		init[len(init)-1] = 3
		want := pcr.Extend(b, pcr.Extend(b, init, b.Sum([]byte("HCRTM"))), b.Sum([]byte{0, 0, 0, 0}))
		if diff := cmp.Diff(want, vals.Get(b, 0)); diff != "" {
			t.Errorf("%v PCR 0 (-want +got):\n%s", b, diff)
		}
	}
	// A separator whose digest is not the hash of its data is flagged.
	l.Events[2].Digests[0].Value = alg.SHA256.Sum([]byte("lie"))
	raw, _ = WriteTCG(l)
	got, _ = ParseTCG(raw)
	if got.CheckDigests() != 1 || got.Events[3].Anomaly == "" {
		t.Error("separator digest mismatch not flagged")
	}
}

func TestHostileLengths(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	tests := map[string][]byte{
		"tcg event size": append(append(make([]byte, 28), huge...), 0),
		"ima name":       append(append(append([]byte{10, 0, 0, 0}, make([]byte, 20)...), 6, 0, 0, 0), "ima-ng\xff\xff\xff\xff"...),
		"cel length":     append([]byte{0, 0xff, 0xff, 0xff, 0xff}, make([]byte, 16)...),
		"cbor":           {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range tests {
		for _, f := range []Format{FormatTCG, FormatIMA, FormatCELTLV, FormatCELCBOR, FormatIMAASCII, FormatCELJSON} {
			if _, err := Parse(b, f); err == nil {
				t.Errorf("Parse(%s as %v) succeeded", name, f)
			}
		}
	}
}
