package verifier

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
)

// referenceValues appraises the verified bios log against the signed
// reference values. The findings depend only on the log, the banks, the
// RIMs and the device model, so they are kept until one changes.
func (p *poll) referenceValues() {
	st := p.st
	if p.bios != nil {
		br := p.v.bootFindings(p.rims, p.bios, p.bv, p.banks, p.rimModel())
		st.boot, st.bootRIMs = &keptClaims{Vector: br.Vector, Reasons: br.Reasons}, p.rims
	}
	if (p.bios != nil || p.biosKept) && st.boot != nil {
		p.r.merge(&Result{Vector: st.boot.Vector, Reasons: st.boot.Reasons})
	}
}

// bootFindings appraises a bios log bound by the quote: events whose
// digest contradicts their data (in every quoted bank), boot components
// against the CoSWID RIMs, the quoted PCRs against signed PCR CoRIMs, the
// log event by event against the base RIMs' support RIMs, and the
// firmware configuration.
func (v *Verifier) bootFindings(idx *rim.Index, bios *eventlog.Log, vals pcr.Values, banks []alg.ID, model string) *Result {
	br := &Result{}
	bios.CheckDigests(banks...)
	for _, e := range bios.Events {
		if e.Anomaly != "" && quoted(e.PCR) {
			br.claim(&br.Vector.Executables, ear.ContraindicatedRuntimeClaim, fmt.Sprintf("executables: bios event %d (PCR %d) lies about what was measured: %s", e.Seq, e.PCR, e.Anomaly))
		}
	}
	vouched := v.checkPCRReferences(idx, br, vals, banks[0], model)
	for i := range v.checkSupportRIMs(idx, br, bios, banks[0], model) {
		vouched[i] = true
	}
	v.appraiseBoot(idx, model, br, bios, banks, vouched)
	return br
}

func quoted(i int) bool { return slices.Contains(quotedPCRs, i) }

// runtimePCR is the PCR the run-time logs (IMA, netequip_boot) extend;
// its value is appraised entry by entry, not against boot references.
const runtimePCR = 10

// derivedTypes are the event types whose digest CheckDigests re-derives
// from the event data: what they say is what was measured, so their data
// is appraised (Secure Boot variables, boot order) rather than looked up.
var derivedTypes = map[eventlog.EventType]bool{
	eventlog.EvSeparator: true, eventlog.EvEFIAction: true, eventlog.EvEFIVariableDriverConfig: true, eventlog.EvEFIHCRTMEvent: true,
	eventlog.EvEFIGPTEvent: true, eventlog.EvEFIGPTEvent2: true, eventlog.EvEFIVariableBoot: true, eventlog.EvEFIVariableBoot2: true,
}

// appraiseBoot decides every extended event of the quoted PCRs by its PCR
// and digest, never by the type the device reports (the TPM does not
// extend the type, so a device can label a boot loader EV_POST_CODE):
// an event whose digest is defined by its data has been checked against
// it; any other must be in a signed CoSWID RIM, or sit in a PCR whose
// value a signed PCR CoRIM or support RIM vouches for (vouched). What
// nothing vouches for is a finding, in a code PCR a contraindicated one.
// The firmware configuration is read only from data bound to its digest.
func (v *Verifier) appraiseBoot(idx *rim.Index, model string, r *Result, l *eventlog.Log, banks []alg.ID, vouched map[int]bool) {
	tv := &r.Vector
	bank := banks[0]
	bad, approved := false, 0
	for i := range l.Events {
		e := &l.Events[i]
		t := eventlog.EventType(e.Type)
		if !quoted(e.PCR) || e.PCR == runtimePCR || t == eventlog.EvNoAction {
			continue // not bound by the quote, or appraised as run time
		}
		if derivedTypes[t] {
			continue // CheckDigests: a lie about its data is already a finding
		}
		if t == eventlog.EvPlatformConfigFlags && boundToData(e, banks) && bytes.Contains(e.Data, []byte("debug=on")) {
			r.claim(&tv.Configuration, ear.UnsupportableConfigClaim, fmt.Sprintf("configuration: PCR %d event %d: firmware debug mode is on", e.PCR, e.Seq))
		}
		d := e.Digest(bank)
		if m := idx.LookupFor(bank, d, model); len(m) > 0 {
			approved++
			if c, ok := idx.CurrentFor(m, model); !ok {
				r.claim(&tv.Executables, ear.UnsafeRuntimeClaim, fmt.Sprintf("executables: PCR %d event %d (%s) is %s %s, superseded by a newer signed RIM (rollback)", e.PCR, e.Seq, describeBoot(e), c.Name, c.Ver))
				bad = true
			}
			continue
		}
		if vouched[e.PCR] {
			approved++
			continue
		}
		bad = true
		if configPCRs[e.PCR] {
			r.claim(&tv.Configuration, ear.UnsafeConfigClaim, fmt.Sprintf("configuration: PCR %d event %d (%s) digest %x is vouched for by no signed RIM", e.PCR, e.Seq, describeBoot(e), short8(d)))
		} else {
			r.claim(&tv.Executables, ear.ContraindicatedRuntimeClaim, fmt.Sprintf("executables: PCR %d event %d (%s) digest %x is in no signed RIM", e.PCR, e.Seq, describeBoot(e), short8(d)))
		}
	}
	if on, conflicts := l.SecureBootMode(); !on {
		reason := "configuration: Secure Boot is off"
		if len(conflicts) > 0 {
			reason += " (" + strings.Join(conflicts, "; ") + ")"
		}
		if v.Policy.RequireSecureBoot {
			r.claim(&tv.Configuration, ear.UnsupportableConfigClaim, reason+", and the policy "+v.Policy.Name+" requires it")
		} else {
			r.claim(&tv.Configuration, ear.UnsafeConfigClaim, reason)
		}
	}
	if tv.Configuration == ear.NoClaim {
		r.claim(&tv.Configuration, ear.ApprovedConfigClaim, "")
	}
	switch {
	case bad:
	case approved == 0:
		// A boot with nothing a signed RIM vouches for is not approved.
		r.claim(&tv.Executables, ear.UnrecognizedRuntimeClaim, "executables: no boot component of the log is in a signed RIM or a signed PCR reference")
	default:
		r.claim(&tv.Executables, ear.ApprovedBootClaim, "")
	}
}

// boundToData says whether e's digest is the hash of its data in every
// bank: only then does its data say what was measured.
func boundToData(e *eventlog.Event, banks []alg.ID) bool {
	for _, b := range banks {
		d := e.Digest(b)
		if d == nil || !bytes.Equal(b.Sum(e.Data), d) {
			return false
		}
	}
	return true
}

// short8 is the first 8 bytes of a digest, for reasons (a signed
// reference value may be shorter).
func short8(b []byte) []byte { return b[:min(8, len(b))] }

// configPCRs hold configuration rather than code in the TCG PC Client
// profile (PFP §3.3.4: 1 platform configuration, 3 option ROM
// configuration, 5 boot manager configuration and GPT, 7 Secure Boot
// policy) and, by Linux boot loader convention, 8 (the kernel command
// line). A difference there is a configuration finding; elsewhere it is
// code that ran.
var configPCRs = map[int]bool{1: true, 3: true, 5: true, 7: true, 8: true}

// claimPCR records a reference-value difference in PCR i under the claim
// its kind of PCR belongs to.
func claimPCR(r *Result, i int, reason string) {
	if configPCRs[i] {
		r.claim(&r.Vector.Configuration, ear.UnsafeConfigClaim, "configuration: "+reason)
	} else {
		r.claim(&r.Vector.Executables, ear.ContraindicatedRuntimeClaim, "executables: "+reason)
	}
}

// checkPCRReferences compares the quoted PCR values (replayed and bound
// by the quote) with the signed PCR CoRIMs for the device's model: one of
// them must hold for every PCR it gives in the quoted bank. Otherwise the
// differences from the closest one are findings. It returns the PCRs
// whose value a reference vouches for. The run-time PCR is left out: its
// value grows with every file the NOS measures, and its entries are
// appraised one by one.
func (v *Verifier) checkPCRReferences(idx *rim.Index, r *Result, vals pcr.Values, bank alg.ID, model string) map[int]bool {
	vouched := map[int]bool{}
	refs := idx.PCRReferences(model)
	var best *rim.PCRReference
	var bestDiff []int
	for _, ref := range refs {
		var diff, same []int
		for _, i := range ref.PCRs.Indexes(bank) {
			if !quoted(i) || i == runtimePCR {
				continue
			}
			if bytes.Equal(valueOf(vals, bank, i), ref.PCRs.Get(bank, i)) {
				same = append(same, i)
			} else {
				diff = append(diff, i)
			}
		}
		if len(same)+len(diff) == 0 {
			continue // nothing in the quoted bank
		}
		if len(diff) == 0 {
			for _, i := range same {
				vouched[i] = true
			}
			return vouched
		}
		if best == nil || len(diff) < len(bestDiff) {
			best, bestDiff = &ref, diff
		}
	}
	if best == nil {
		if len(refs) > 0 {
			r.claim(&r.Vector.Executables, ear.UnrecognizedRuntimeClaim, fmt.Sprintf("executables: the signed PCR reference values for model %s have no %v PCRs, the bank quoted", model, bank))
		}
		return vouched
	}
	for _, i := range best.PCRs.Indexes(bank) {
		if quoted(i) && i != runtimePCR && !slices.Contains(bestDiff, i) {
			vouched[i] = true
		}
	}
	for _, i := range bestDiff {
		got, want := valueOf(vals, bank, i), best.PCRs.Get(bank, i)
		claimPCR(r, i, fmt.Sprintf("%v PCR %d is %x, the signed PCR reference values %s (model %s) have %x", bank, i, short8(got), refName(best), best.Model, short8(want)))
	}
	return vouched
}

func refName(ref *rim.PCRReference) string {
	if ref.Source != "" {
		return ref.Source
	}
	return "corim " + ref.ID
}

// valueOf is the verified value of PCR i: replayed, or its reset value
// when no event extended it.
func valueOf(vals pcr.Values, b alg.ID, i int) []byte {
	if v := vals.Get(b, i); v != nil {
		return v
	}
	return pcr.Initial(b, i)
}

// maxSupportDiffs bounds the support RIM differences named.
const maxSupportDiffs = 12

// checkSupportRIMs compares the bios log, event by event, with the
// reference event logs (support RIMs) of the signed base RIMs for the
// device's model. One of them must list the same events in every quoted
// PCR; otherwise the differences from the closest one are findings, in
// words: which PCR, which event, what it measured and what the reference
// has.
func (v *Verifier) checkSupportRIMs(idx *rim.Index, r *Result, bios *eventlog.Log, bank alg.ID, model string) map[int]bool {
	vouched := map[int]bool{}
	var best *rim.SupportRIM
	var bestDiff []pcrDiff
	supports := idx.Supports(model)
	for _, s := range supports {
		if !slices.Contains(s.Log.Banks, bank) {
			continue
		}
		diff := diffLogs(bios, s.Log, bank)
		if best == nil || len(diff) < len(bestDiff) {
			best, bestDiff = &s, diff
		}
		if len(diff) == 0 {
			break
		}
	}
	if best == nil {
		if len(supports) > 0 {
			r.claim(&r.Vector.Executables, ear.UnrecognizedRuntimeClaim, fmt.Sprintf("executables: the support RIMs for model %s have no %v digests, the bank quoted", model, bank))
		}
		return vouched
	}
	// A PCR whose events all align with the vendor's reference log is
	// vouched for by it.
	for i := range best.Log.Events {
		if e := &best.Log.Events[i]; quoted(e.PCR) && e.PCR != runtimePCR {
			vouched[e.PCR] = true
		}
	}
	for _, d := range bestDiff {
		delete(vouched, d.pcr)
	}
	if len(bestDiff) == 0 {
		return vouched
	}
	name := fmt.Sprintf("the support RIM %s of %s %s", best.Path, best.Base.SoftwareName, best.Base.SoftwareVersion)
	for k, d := range bestDiff {
		if k == maxSupportDiffs {
			claimPCR(r, d.pcr, fmt.Sprintf("and %d more differences from %s", len(bestDiff)-k, name))
			break
		}
		claimPCR(r, d.pcr, d.text+" ("+name+")")
	}
	return vouched
}

// maxDiffCells bounds the alignment table of one PCR (ints).
const maxDiffCells = 1 << 20

// pcrDiff is one difference between a log and a reference log.
type pcrDiff struct {
	pcr  int
	text string
}

// diffLogs aligns the extended events of l and ref PCR by PCR (the order
// across PCRs does not change their values) with a longest common
// subsequence of (type, digest) and describes what does not align.
func diffLogs(l, ref *eventlog.Log, bank alg.ID) []pcrDiff {
	group := func(x *eventlog.Log) map[int][]*eventlog.Event {
		m := map[int][]*eventlog.Event{}
		for i := range x.Events {
			e := &x.Events[i]
			if quoted(e.PCR) && eventlog.EventType(e.Type) != eventlog.EvNoAction {
				m[e.PCR] = append(m[e.PCR], e)
			}
		}
		return m
	}
	got, want := group(l), group(ref)
	var pcrs []int
	for _, i := range quotedPCRs {
		if len(got[i])+len(want[i]) > 0 {
			pcrs = append(pcrs, i)
		}
	}
	same := func(a, b *eventlog.Event) bool {
		return a.Type == b.Type && bytes.Equal(a.Digest(bank), b.Digest(bank))
	}
	var out []pcrDiff
	for _, i := range pcrs {
		a, b := got[i], want[i]
		if len(a)*len(b) > maxDiffCells {
			// A PCR extended this often is not a boot a vendor signed a
			// reference for; aligning it would cost memory quadratic in
			// what the device chose to log.
			if len(a) != len(b) || !slices.EqualFunc(a, b, same) {
				out = append(out, pcrDiff{i, fmt.Sprintf("PCR %d has %d events where the reference log has %d; too many to compare one by one", i, len(a), len(b))})
			}
			continue
		}
		// lcs[x][y] is the common subsequence length of a[x:] and b[y:].
		lcs := make([][]int, len(a)+1)
		for x := range lcs {
			lcs[x] = make([]int, len(b)+1)
		}
		for x := len(a) - 1; x >= 0; x-- {
			for y := len(b) - 1; y >= 0; y-- {
				if same(a[x], b[y]) {
					lcs[x][y] = lcs[x+1][y+1] + 1
				} else {
					lcs[x][y] = max(lcs[x+1][y], lcs[x][y+1])
				}
			}
		}
		x, y := 0, 0
		for x < len(a) || y < len(b) {
			switch {
			case x < len(a) && y < len(b) && same(a[x], b[y]):
				x, y = x+1, y+1
			case x < len(a) && y < len(b) && a[x].Type == b[y].Type && lcs[x+1][y+1] == lcs[x][y]:
				out = append(out, pcrDiff{i, fmt.Sprintf("PCR %d event %d (%s) measured %x where the reference has %x", i, a[x].Seq, describeBoot(a[x]), short8(a[x].Digest(bank)), short8(b[y].Digest(bank)))})
				x, y = x+1, y+1
			case x < len(a) && (y == len(b) || lcs[x+1][y] >= lcs[x][y+1]):
				out = append(out, pcrDiff{i, fmt.Sprintf("PCR %d event %d (%s, %x) is not in the reference log", i, a[x].Seq, describeBoot(a[x]), short8(a[x].Digest(bank)))})
				x++
			default:
				out = append(out, pcrDiff{i, fmt.Sprintf("PCR %d: the reference log's %s (%x) is missing", i, describeBoot(b[y]), short8(b[y].Digest(bank)))})
				y++
			}
		}
	}
	return out
}

// describeBoot names what a boot event measured, for reasons.
func describeBoot(e *eventlog.Event) string {
	switch eventlog.EventType(e.Type) {
	case eventlog.EvEFIPlatformFirmwareBlob:
		return "platform firmware"
	case eventlog.EvEFIAction, eventlog.EvAction, eventlog.EvIPL, eventlog.EvPlatformConfigFlags:
		if s := printable(e.Data); s != "" {
			return fmt.Sprintf("%s %q", e.TypeName(), s)
		}
	case eventlog.EvEFIVariableDriverConfig, eventlog.EvEFIVariableBoot, eventlog.EvEFIVariableBoot2, eventlog.EvEFIVariableAuthority:
		if v, err := eventlog.ParseUEFIVariable(e.Data); err == nil {
			return fmt.Sprintf("%s %s", e.TypeName(), v.Name)
		}
	case eventlog.EvEFIBootServicesApp, eventlog.EvEFIBootServicesDriver, eventlog.EvEFIRuntimeServicesDriver:
		// UEFI_IMAGE_LOAD_EVENT: the device path's UTF-16 file name
		// follows the 32-byte header; show it when it decodes.
		if len(e.Data) > 40 {
			var name []rune
			for i := 36; i+1 < len(e.Data); i += 2 {
				c := rune(e.Data[i]) | rune(e.Data[i+1])<<8
				if c == 0 {
					break
				}
				if c < 32 || c > 126 {
					name = nil
					break
				}
				name = append(name, c)
			}
			if len(name) > 0 {
				return string(name)
			}
		}
	}
	return e.TypeName()
}

// printable returns b as text when it is short printable ASCII.
func printable(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 || len(b) > 80 {
		return ""
	}
	for _, c := range b {
		if c < 32 || c > 126 {
			return ""
		}
	}
	return strings.TrimSpace(string(b))
}
