package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// NetequipPCR is the PCR of the netequip_boot log (RFC 9684 uses the IMA
// PCR for it on Linux-based NOSes).
const NetequipPCR = 10

// TPM is what a measured boot asks of a TPM: *tpm.TPM, or the fleet
// simulator's software TPM.
type TPM interface {
	Banks(ctx context.Context) ([]alg.ID, error)
	ReadPCRs(ctx context.Context, sel []pcr.Selection) (pcr.Values, error)
	Extend(ctx context.Context, idx int, digests map[alg.ID][]byte) error
}

// Boot is the result of a measured boot.
type Boot struct {
	Banks    []alg.ID
	UEFI     *eventlog.Log // TCG crypto-agile log, PCRs 0–9
	Netequip *eventlog.Log // ima-ng entries, PCR 10
	// UEFILog and NetequipLog are the logs as the device serves them.
	UEFILog     []byte
	NetequipLog []byte
}

// booter extends a TPM and records the events.
type booter struct {
	ctx   context.Context
	tp    TPM
	banks []alg.ID
	log   []eventlog.Event
}

// measure extends digests of data (or the given per-bank digests) into pcr
// and logs the event.
func (b *booter) measure(pcrIdx int, typ eventlog.EventType, data []byte, measured []byte) error {
	e := eventlog.Event{PCR: pcrIdx, Type: uint32(typ), Data: data}
	ds := map[alg.ID][]byte{}
	for _, bank := range b.banks {
		d := bank.Sum(measured)
		ds[bank] = d
		e.Digests = append(e.Digests, eventlog.Digest{Alg: bank, Value: d})
	}
	if err := b.tp.Extend(b.ctx, pcrIdx, ds); err != nil {
		return err
	}
	e.Seq = len(b.log) + 1 // event 0 is the Spec ID header the writer adds
	b.log = append(b.log, e)
	return nil
}

func utf16le(s string) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(s)) {
		out = binary.LittleEndian.AppendUint16(out, u)
	}
	return out
}

// uefiVariable encodes a UEFI_VARIABLE_DATA (PFP §10.4.4.1).
func uefiVariable(guid [16]byte, name string, data []byte) []byte {
	n := utf16le(name)
	out := append([]byte{}, guid[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(n)/2))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(data)))
	return append(append(out, n...), data...)
}

var (
	efiGlobal   = [16]byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	efiImageSec = [16]byte{0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
	certX509    = [16]byte{0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}
	vendorOwner = [16]byte{'R', 'I', 'V', '-', 'v', 'e', 'n', 'd', 'o', 'r', '-', 'o', 'w', 'n', 'e', 'r'}
)

// signatureList encodes one EFI_SIGNATURE_LIST holding an X.509 entry.
func signatureList(cert []byte) []byte {
	out := append([]byte{}, certX509[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(28+16+len(cert)))
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(16+len(cert)))
	out = append(out, vendorOwner[:]...)
	return append(out, cert...)
}

// BootImage runs a measured boot of img into tp. The TPM must be freshly
// reset (PCRs 0–10 at their reset values): call it right after Open or a
// reset.
func BootImage(ctx context.Context, tp TPM, img *Image) (*Boot, error) {
	banks, err := tp.Banks(ctx)
	if err != nil {
		return nil, err
	}
	b := &booter{ctx: ctx, tp: tp, banks: banks}
	sep := []byte{0, 0, 0, 0}
	steps := []func() error{
		// PCR 0: S-CRTM version and the platform firmware.
		func() error {
			return b.measure(0, eventlog.EvSCRTMVersion, utf16le(img.FirmwareVersion+"\x00"), utf16le(img.FirmwareVersion+"\x00"))
		},
		func() error {
			blobRef := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0xFF000000), uint64(len(img.Firmware)))
			return b.measure(0, eventlog.EvEFIPlatformFirmwareBlob, blobRef, img.Firmware)
		},
		// PCR 1: platform configuration, including the debug setting.
		func() error {
			flags := []byte("debug=off")
			if img.DebugMode {
				flags = []byte("debug=on")
			}
			return b.measure(1, eventlog.EvPlatformConfigFlags, flags, flags)
		},
		// PCR 7: Secure Boot configuration.
		func() error {
			sb := []byte{0}
			if img.SecureBoot {
				sb = []byte{1}
			}
			for _, v := range []struct {
				guid [16]byte
				name string
				data []byte
			}{
				{efiGlobal, "SecureBoot", sb}, {efiGlobal, "PK", signatureList(img.DBCert[:256])},
				{efiGlobal, "KEK", signatureList(img.DBCert[128:384])}, {efiImageSec, "db", signatureList(img.DBCert)},
				{efiImageSec, "dbx", nil},
			} {
				d := uefiVariable(v.guid, v.name, v.data)
				if err := b.measure(7, eventlog.EvEFIVariableDriverConfig, d, d); err != nil {
					return err
				}
			}
			return nil
		},
		// Separators for PCRs 0–7 at the end of the pre-OS phase.
		func() error {
			for p := 0; p <= 7; p++ {
				if err := b.measure(p, eventlog.EvSeparator, sep, sep); err != nil {
					return err
				}
			}
			return nil
		},
		// PCR 4: the boot loader and kernel as boot-services applications
		// (the digest stands for the Authenticode hash of the PE image).
		func() error {
			a := []byte("Calling EFI Application from Boot Option")
			if err := b.measure(4, eventlog.EvEFIAction, a, a); err != nil {
				return err
			}
			if img.SecureBoot {
				auth := uefiVariable(efiImageSec, "db", append(append([]byte{}, vendorOwner[:]...), img.DBCert...))
				if err := b.measure(7, eventlog.EvEFIVariableAuthority, auth, auth); err != nil {
					return err
				}
			}
			if err := b.measure(4, eventlog.EvEFIBootServicesApp, imageLoadEvent(len(img.Bootloader), "\\EFI\\riv\\bootx64.efi"), img.Bootloader); err != nil {
				return err
			}
			return b.measure(4, eventlog.EvEFIBootServicesApp, imageLoadEvent(len(img.Kernel), "\\vmlinuz-"+img.Version), img.Kernel)
		},
		// PCR 8: kernel command line; PCR 9: initrd (as a Linux boot loader).
		func() error {
			cmd := []byte("kernel_cmdline: /vmlinuz-" + img.Version + " " + img.KernelCmdline)
			if err := b.measure(8, eventlog.EvIPL, cmd, cmd); err != nil {
				return err
			}
			return b.measure(9, eventlog.EvIPL, []byte("/initrd.img-"+img.Version), img.Initrd)
		},
		// PCR 5: ExitBootServices.
		func() error {
			for _, a := range []string{"Exit Boot Services Invocation", "Exit Boot Services Returned with Success"} {
				if err := b.measure(5, eventlog.EvEFIAction, []byte(a), []byte(a)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("measured boot: %w", err)
		}
	}
	boot := &Boot{Banks: banks, UEFI: &eventlog.Log{Format: eventlog.FormatTCG, Banks: banks, Events: b.log}}
	if boot.UEFILog, err = eventlog.WriteTCG(boot.UEFI); err != nil {
		return nil, err
	}
	return boot, bootNOS(ctx, tp, img, boot)
}

// ErrUnreproducible says a captured firmware log cannot be extended into
// a TPM from outside the firmware.
var ErrUnreproducible = errors.New("firmware log cannot be reproduced in a TPM")

// BootFirmwareLog boots img with a captured firmware log in place of the
// simulated firmware: every event of raw is extended into tp, in each of
// the log's banks, so that raw replays to tp's PCRs, and the NOS then
// measures into PCR 10 as BootImage's does. tp must be freshly reset and
// have exactly the log's banks allocated. A log that starts from
// locality 3 or 4 (a StartupLocality event other than 0: PCR 0 then
// starts at 3 or 4, which no extend reaches), that extends PCR 10 (the
// NOS's), or whose banks tp lacks is ErrUnreproducible.
func BootFirmwareLog(ctx context.Context, tp TPM, raw []byte, img *Image) (*Boot, error) {
	l, err := eventlog.ParseTCG(raw)
	if err != nil {
		return nil, err
	}
	banks, err := tp.Banks(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range l.Banks {
		if !slices.Contains(banks, b) {
			return nil, fmt.Errorf("%w: the log has a %v bank the TPM has not allocated", ErrUnreproducible, b)
		}
	}
	for _, b := range banks {
		if !slices.Contains(l.Banks, b) {
			return nil, fmt.Errorf("%w: the TPM has a %v bank the log has no digests for", ErrUnreproducible, b)
		}
	}
	for _, e := range l.Events {
		if e.Type == uint32(eventlog.EvNoAction) {
			if loc, ok := startupLocality(e.Data); ok && loc != 0 {
				return nil, fmt.Errorf("%w: the firmware started the TPM from locality %d (StartupLocality event), so PCR 0 starts at %d", ErrUnreproducible, loc, loc)
			}
			continue
		}
		if e.PCR < 0 || e.PCR > 23 || e.PCR == NetequipPCR {
			return nil, fmt.Errorf("%w: event %d extends PCR %d", ErrUnreproducible, e.Seq, e.PCR)
		}
		ds := map[alg.ID][]byte{}
		for _, d := range e.Digests {
			ds[d.Alg] = d.Value
		}
		if err := tp.Extend(ctx, e.PCR, ds); err != nil {
			return nil, fmt.Errorf("event %d: %w", e.Seq, err)
		}
	}
	boot := &Boot{Banks: banks, UEFI: l, UEFILog: raw}
	return boot, bootNOS(ctx, tp, img, boot)
}

// startupLocality decodes a TCG StartupLocality event (PC Client PFP
// §10.4.5.3): "StartupLocality\0" and one byte.
func startupLocality(data []byte) (int, bool) {
	const sig = "StartupLocality\x00"
	if len(data) != len(sig)+1 || string(data[:len(sig)]) != sig {
		return 0, false
	}
	return int(data[len(sig)]), true
}

// bootNOS is the NOS's part of a boot: boot_aggregate, then every package
// file and the startup configuration, measured into PCR 10 as ima-ng
// entries.
func bootNOS(ctx context.Context, tp TPM, img *Image, boot *Boot) error {
	n := &netequip{ctx: ctx, tp: tp, banks: boot.Banks}
	if img.RuntimeOff {
		boot.Netequip = &eventlog.Log{Format: eventlog.FormatIMA, Banks: []alg.ID{alg.SHA1}}
		return nil
	}
	agg, err := bootAggregate(ctx, tp, boot.Banks)
	if err != nil {
		return err
	}
	if err := n.measure("boot_aggregate", agg, alg.SHA256, nil); err != nil {
		return err
	}
	for _, p := range img.Packages {
		for _, f := range p.Files {
			if err := n.measure(f.Path, alg.SHA256.Sum(f.Content), alg.SHA256, nil); err != nil {
				return err
			}
		}
	}
	if err := n.measure("/etc/riv/startup-config", alg.SHA256.Sum(img.StartupConfig), alg.SHA256, nil); err != nil {
		return err
	}
	boot.Netequip = &eventlog.Log{Format: eventlog.FormatIMA, Banks: []alg.ID{alg.SHA1}, Events: n.log}
	boot.NetequipLog, err = eventlog.WriteIMA(n.log, alg.SHA1)
	return err
}

// MeasureFile is the NOS measuring a file at run time (an executable it
// is about to run, a configuration it loads): appended to the
// netequip_boot log (and given to served, if not nil: the log a device
// serves), then extended into PCR 10 — the kernel's order (MeasureIMA).
func (b *Boot) MeasureFile(ctx context.Context, tp TPM, name string, content []byte, served func(eventlog.Event)) error {
	n := &netequip{ctx: ctx, tp: tp, banks: b.Banks, log: b.Netequip.Events}
	err := n.measure(name, alg.SHA256.Sum(content), alg.SHA256, func(e eventlog.Event) error {
		// A binary IMA log is its records back to back: encode only the
		// new one. Re-encoding the whole log made a long-running
		// device's every measurement cost O(log length), which showed up
		// as device CPU in the collector's benchmarks.
		raw, err := eventlog.WriteIMA([]eventlog.Event{e}, alg.SHA1)
		if err != nil {
			return err
		}
		b.Netequip.Events = n.log
		b.NetequipLog = append(b.NetequipLog, raw...)
		if served != nil {
			served(e)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("measure %s: %w", name, err)
	}
	return nil
}

// imageLoadEvent encodes a UEFI_IMAGE_LOAD_EVENT with a file-path device
// path (PFP §10.4.3).
func imageLoadEvent(size int, path string) []byte {
	dp := []byte{0x04, 0x04} // media device path, file path
	p := utf16le(path + "\x00")
	dp = binary.LittleEndian.AppendUint16(dp, uint16(4+len(p)))
	dp = append(dp, p...)
	dp = append(dp, 0x7f, 0xff, 0x04, 0x00)                // end of device path
	out := binary.LittleEndian.AppendUint64(nil, 0x100000) // ImageLocationInMemory
	out = binary.LittleEndian.AppendUint64(out, uint64(size))
	out = binary.LittleEndian.AppendUint64(out, 0) // ImageLinkTimeAddress
	out = binary.LittleEndian.AppendUint64(out, uint64(len(dp)))
	return append(out, dp...)
}

// bootAggregate is IMA's boot_aggregate: SHA-256 over PCRs 0–9 of the
// SHA-256 bank (the SHA-1 bank's on a TPM without one, as the kernel
// takes the first bank it has).
func bootAggregate(ctx context.Context, tp TPM, banks []alg.ID) ([]byte, error) {
	bank := alg.SHA256
	if !slices.Contains(banks, bank) {
		bank = banks[0]
	}
	vals, err := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: bank, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}})
	if err != nil {
		return nil, err
	}
	h, _ := alg.SHA256.New()
	for i := 0; i <= 9; i++ {
		h.Write(vals.Get(bank, i))
	}
	return h.Sum(nil), nil
}

// netequip records ima-ng measurements into PCR 10.
type netequip struct {
	ctx   context.Context
	tp    TPM
	banks []alg.ID
	log   []eventlog.Event
}

// measure records the entry in n's log (and with record, if not nil),
// then extends PCR 10 (MeasureIMA).
func (n *netequip) measure(name string, fileHash []byte, fileAlg alg.ID, record func(eventlog.Event) error) error {
	return MeasureIMA(n.ctx, n.tp, n.banks, name, fileHash, fileAlg, func(e eventlog.Event) error {
		e.Seq = len(n.log)
		n.log = append(n.log, e)
		if record != nil {
			return record(e)
		}
		return nil
	})
}

// MeasureIMA is one IMA measurement as the kernel makes it: an ima-ng
// entry for the file name with its hash is recorded (record appends it to
// the log), then its template digest (SHA-1 and each of banks) is
// extended into PCR 10. The order is the kernel's (ima_add_template_entry
// adds to the measurement list before it extends the PCR): a verifier
// that quotes and then reads the log finds every quoted entry in it —
// perhaps some more after them, which it leaves for its next poll — never
// a PCR that has an entry the log does not have yet.
func MeasureIMA(ctx context.Context, tp TPM, banks []alg.ID, name string, fileHash []byte, fileAlg alg.ID, record func(eventlog.Event) error) error {
	e := eventlog.IMAEntryFor(NetequipPCR, fileAlg, fileHash, name, nil, dedupe(append([]alg.ID{alg.SHA1}, banks...)))
	ds := map[alg.ID][]byte{}
	for _, b := range banks {
		ds[b] = e.Digest(b)
	}
	if err := record(e); err != nil {
		return err
	}
	return tp.Extend(ctx, NetequipPCR, ds)
}

func dedupe(in []alg.ID) []alg.ID {
	seen := map[alg.ID]bool{}
	var out []alg.ID
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}
