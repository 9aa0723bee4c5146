package router

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/tpm"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// checkReplay parses the logs as the device serves them and checks that
// they replay to the TPM's PCRs 0–10 in every allocated bank.
func checkReplay(t *testing.T, tp *tpm.TPM, b *Boot) {
	t.Helper()
	ctx := context.Background()
	var sel []pcr.Selection
	for _, bank := range b.Banks {
		sel = append(sel, pcr.Selection{Bank: bank, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}})
	}
	got, err := tp.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	uefi, err := eventlog.Parse(b.UEFILog, eventlog.FormatAuto)
	if err != nil {
		t.Fatalf("parse UEFI log: %v", err)
	}
	ne, err := eventlog.Parse(b.NetequipLog, eventlog.FormatAuto)
	if err != nil {
		t.Fatalf("parse netequip log: %v", err)
	}
	if uefi.Format != eventlog.FormatTCG || ne.Format != eventlog.FormatIMA {
		t.Fatalf("formats %v/%v", uefi.Format, ne.Format)
	}
	want := pcr.Values{}
	for _, bank := range b.Banks {
		for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
			want.Set(bank, i, got.Get(bank, i))
		}
	}
	res, err := uefi.Verify(want)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Quirks) > 0 || len(res.Anomalies) > 0 {
		t.Errorf("UEFI log vs TPM: mismatches %v quirks %v anomalies %v", res.Mismatches, res.Quirks, res.Anomalies)
	}
	ima := pcr.Values{}
	for _, bank := range b.Banks {
		ima.Set(bank, NetequipPCR, got.Get(bank, NetequipPCR))
	}
	res, err = ne.Verify(ima)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Quirks) > 0 {
		t.Errorf("netequip log vs TPM: mismatches %v quirks %v", res.Mismatches, res.Quirks)
	}
	if n := ne.CheckDigests(); n != 0 {
		t.Errorf("%d netequip template digests wrong", n)
	}
	sb := uefi.SecureBoot()
	if !sb.Enabled || len(sb.DB) != 1 || len(sb.Authorities) != 1 {
		t.Errorf("secure boot state %+v", sb)
	}
}

// bootSim boots img on a fresh simulator TPM, closed when the test ends.
func bootSim(t *testing.T, img *Image) (*tpm.TPM, *Boot) {
	t.Helper()
	tp, err := tpm.Open(context.Background(), "sim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	b, err := BootImage(context.Background(), tp, img)
	if err != nil {
		t.Fatal(err)
	}
	return tp, b
}

func TestBootSimulatorAndReboot(t *testing.T) {
	ctx := context.Background()
	img := DefaultImage("1.0")
	tp, b := bootSim(t, img)
	checkReplay(t, tp, b)
	if len(b.Netequip.Events) != 1+6+1 {
		t.Errorf("%d netequip entries", len(b.Netequip.Events))
	}
	c1, _ := tp.ReadClock(ctx)
	// Reboot: reset the TPM and boot again; same image, same PCRs.
	if err := tp.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	b2, err := BootImage(ctx, tp, img)
	if err != nil {
		t.Fatal(err)
	}
	checkReplay(t, tp, b2)
	c2, _ := tp.ReadClock(ctx)
	if c2.ResetCount != c1.ResetCount+1 {
		t.Errorf("resetCount %d -> %d", c1.ResetCount, c2.ResetCount)
	}
	if string(b2.UEFILog) != string(b.UEFILog) {
		t.Error("the same image booted twice gave different UEFI logs")
	}
}

func TestBootSwtpmSHA256SHA384(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, "sha256", "sha384")
	ctx := context.Background()
	tp, err := tpm.Open(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	b, err := BootImage(ctx, tp, DefaultImage("1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Banks; len(got) != 2 || got[0] != alg.SHA256 || got[1] != alg.SHA384 {
		t.Fatalf("banks %v, want [sha256 sha384]", got)
	}
	checkReplay(t, tp, b)
	if !strings.Contains(string(b.NetequipLog), "/usr/bin/frr") {
		t.Error("netequip log lacks the frr binary")
	}
}

// MeasureFile appends the new record to the served log; the result must
// be the log a full re-encoding gives, and still replay to PCR 10.
func TestMeasureFileAppends(t *testing.T) {
	ctx := context.Background()
	tp, b := bootSim(t, DefaultImage("1.0"))
	for i := range 3 {
		if err := b.MeasureFile(ctx, tp, "/usr/bin/tool"+string(rune('a'+i)), []byte{byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	full, err := eventlog.WriteIMA(b.Netequip.Events, alg.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	if string(full) != string(b.NetequipLog) {
		t.Error("the appended log differs from the whole log re-encoded")
	}
	if len(b.Netequip.Events) != 1+6+1+3 {
		t.Errorf("%d netequip entries, want 11", len(b.Netequip.Events))
	}
	checkReplay(t, tp, b)
}

// TestMeasureLogBeforePCR: a run-time measurement is in the served log
// before PCR 10 has it (the kernel's order), so a verifier that quotes
// and then reads the log never finds a quoted entry missing from it.
func TestMeasureLogBeforePCR(t *testing.T) {
	ctx := context.Background()
	tp, b := bootSim(t, DefaultImage("1.0"))
	sel := []pcr.Selection{{Bank: b.Banks[0], PCRs: []int{NetequipPCR}}}
	pcr10 := func() string {
		v, err := tp.ReadPCRs(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(v.Get(b.Banks[0], NetequipPCR))
	}
	before, logged := pcr10(), len(b.Netequip.Events)
	served := 0
	err := b.MeasureFile(ctx, tp, "/usr/bin/late", []byte("late"), func(e eventlog.Event) {
		served++
		if got := pcr10(); got != before {
			t.Errorf("PCR 10 was extended (%s) before the entry was served", got)
		}
		if len(b.Netequip.Events) != logged+1 || e.Seq != logged || e.IMA == nil || e.IMA.FileName != "/usr/bin/late" {
			t.Errorf("served entry %d %+v, the boot's log %d entries (was %d)", e.Seq, e.IMA, len(b.Netequip.Events), logged)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if served != 1 || pcr10() == before {
		t.Fatalf("served %d times; PCR 10 extended: %v", served, pcr10() != before)
	}
	checkReplay(t, tp, b)
}

// TestBootFirmwareLog extends captured firmware logs of real machines
// into swtpm and checks the TPM then holds the PCR values published with
// the log (independently of RIV's replay), and that the served logs
// replay to the TPM, IMA included.
func TestBootFirmwareLog(t *testing.T) {
	for _, name := range []string{"cos-101-amd-sev", "arch-linux-workstation"} {
		t.Run(name, func(t *testing.T) {
			raw := testref.Read(t, "eventlogs", "uefi", "go-tpm-tools", name+".bin")
			var want struct {
				PCRs map[string]map[string]string `json:"pcrs"`
			}
			if err := json.Unmarshal(testref.Read(t, "eventlogs", "uefi", "go-tpm-tools", name+".pcrs.json"), &want); err != nil {
				t.Fatal(err)
			}
			sw := swtpmFor(t, raw)
			ctx := context.Background()
			tp, err := tpm.Open(ctx, sw.Spec())
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			b, err := BootFirmwareLog(ctx, tp, raw, DefaultImage("2.0"))
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			for bankName, pcrs := range want.PCRs {
				bank, err := alg.ParseHash(bankName)
				if err != nil {
					t.Fatal(err)
				}
				for idx, hexv := range pcrs {
					i, _ := strconv.Atoi(idx)
					if i == NetequipPCR {
						continue
					}
					got, err := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: bank, PCRs: []int{i}}})
					if err != nil {
						t.Fatal(err)
					}
					if g := hex.EncodeToString(got.Get(bank, i)); g != hexv {
						t.Errorf("%s PCR %d = %s, published %s", bankName, i, g, hexv)
					}
					checked++
				}
			}
			if checked < 8 {
				t.Fatalf("only %d published PCRs compared", checked)
			}
			ne, err := eventlog.Parse(b.NetequipLog, eventlog.FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			ima := pcr.Values{}
			got, err := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{NetequipPCR}}})
			if err != nil {
				t.Fatal(err)
			}
			ima.Set(alg.SHA256, NetequipPCR, got.Get(alg.SHA256, NetequipPCR))
			if res, err := ne.Verify(ima); err != nil || !res.OK() {
				t.Errorf("IMA log vs TPM: %v %+v", err, res)
			}
		})
	}
}

// TestBootFirmwareLogUnreproducible: logs no extend from outside the
// firmware can reproduce are refused with the reason.
func TestBootFirmwareLogUnreproducible(t *testing.T) {
	ctx := context.Background()
	// dell1: the firmware started the TPM from locality 3.
	dell := testref.Read(t, "eventlogs", "uefi", "ibmtss", "dell1.bin")
	sw := swtpmFor(t, dell)
	tp, err := tpm.Open(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	_, err = BootFirmwareLog(ctx, tp, dell, DefaultImage("2.0"))
	if !errors.Is(err, ErrUnreproducible) || !strings.Contains(err.Error(), "locality 3") {
		t.Errorf("dell1: %v", err)
	}
	// A log with banks the TPM lacks (and the reverse).
	sw2 := tpmtest.StartSwtpm(t, "sha256", "sha384")
	tp2, err := tpm.Open(ctx, sw2.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	_, err = BootFirmwareLog(ctx, tp2, testref.Read(t, "eventlogs", "uefi", "go-tpm-tools", "arch-linux-workstation.bin"), DefaultImage("2.0"))
	if !errors.Is(err, ErrUnreproducible) || !strings.Contains(err.Error(), "bank") {
		t.Errorf("bank mismatch: %v", err)
	}
	if _, err := BootFirmwareLog(ctx, tp2, []byte("not a log"), DefaultImage("2.0")); err == nil {
		t.Error("garbage booted")
	}
}

// swtpmFor starts an swtpm with exactly the banks of the TCG log raw.
func swtpmFor(t *testing.T, raw []byte) *tpmtest.Swtpm {
	t.Helper()
	l, err := eventlog.ParseTCG(raw)
	if err != nil {
		t.Fatal(err)
	}
	var banks []string
	for _, b := range l.Banks {
		banks = append(banks, b.String())
	}
	return tpmtest.StartSwtpm(t, banks...)
}
