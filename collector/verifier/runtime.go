package verifier

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
)

// maxUncovered bounds how many log entries may have been measured between
// the quote and the log retrieval. A busy router logs that many in a
// burst (a poll's log pages take a while to fetch, more under load: 64
// was exceeded by 50-entry bursts in BenchmarkKeptSession); searching the
// bound costs a lying device's poll ≈ 20 ms more, and a log whose quoted
// prefix is not within it does not replay to the quote (contraindicated).
const maxUncovered = 4096

// maxNames bounds the files named in one kind of finding; the rest are
// counted.
const maxNames = 100

// runtimeState is what the verifier keeps of a runtime log (netequip_boot
// or ima) between polls: where it stopped, the PCR values up to there,
// and what it found, instead of the entries themselves.
type runtimeState struct {
	logType string
	banks   []alg.ID
	rims    *rim.Index // the index the findings were made against
	digest  [32]byte   // rims' digest, alone in a state restored from a snapshot
	model   string     // the device's model: only its RIMs (and product-less ones) apply
	seen    bool       // last is valid
	last    uint64     // sequence number of the last verified entry
	vals    keptPCRs   // replay of every verified entry
	// What the verified entries showed, for the claims of every later
	// poll until the device reboots; nil while they showed nothing, as
	// on most devices (the lists cost 240 B).
	found *runtimeFindings
}

type runtimeFindings struct {
	unknown    findings // files no signed RIM lists
	rollback   findings // files whose every RIM is superseded
	config     findings // configurations neither signed nor allowed
	forged     findings // entries whose logged digest is not their data's
	violations findings // IMA measurement violations
}

func (f *runtimeFindings) list() [5]*findings {
	return [5]*findings{&f.unknown, &f.rollback, &f.config, &f.forged, &f.violations}
}

// finding returns the findings, to add one.
func (rs *runtimeState) finding() *runtimeFindings {
	if rs.found == nil {
		rs.found = &runtimeFindings{}
	}
	return rs.found
}

// runtimeStates are the states of a device's runtime logs, by type in
// order: there are one or two, and a map of them cost 250 B a device.
type runtimeStates []*runtimeState

// of returns the state of runtime log t, or nil.
func (s runtimeStates) of(t string) *runtimeState {
	for _, rs := range s {
		if rs.logType == t {
			return rs
		}
	}
	return nil
}

// set keeps rs as the state of its log, in place of the one before.
func (s *runtimeStates) set(rs *runtimeState) {
	i, found := slices.BinarySearchFunc(*s, rs.logType, func(x *runtimeState, t string) int { return strings.Compare(x.logType, t) })
	if found {
		(*s)[i] = rs
		return
	}
	*s = slices.Insert(*s, i, rs)
}

func (rs *runtimeState) matches(banks []alg.ID, rims *rim.Index) bool {
	return slices.Equal(rs.banks, banks) && sameIndex(&rs.rims, rs.digest, rims)
}

// clean reports whether nothing but approved files was measured.
func (rs *runtimeState) clean() bool {
	if rs.found == nil {
		return true
	}
	for _, f := range rs.found.list() {
		if !f.empty() {
			return false
		}
	}
	return true
}

// replay continues the verified replay with the new entries in l.
func (rs *runtimeState) replay(l *eventlog.Log, banks []alg.ID) (pcr.Values, error) {
	from := rs.vals.values()
	if len(l.Events) == 0 {
		out := pcr.Values{}
		for _, b := range banks {
			for i, v := range from[b] {
				out.Set(b, i, v)
			}
		}
		return out, nil
	}
	return l.Replay(eventlog.ReplayOptions{Banks: banks, From: from})
}

// coveredPrefix finds the longest prefix of l's entries, leaving out at
// most maxUncovered, whose replay the quote covers (covers reports it):
// its length and values, or -1.
func (rs *runtimeState) coveredPrefix(l *eventlog.Log, banks []alg.ID, covers func(pcr.Values) bool) (int, pcr.Values) {
	n := len(l.Events)
	start := max(0, n-maxUncovered)
	sub := *l
	sub.Events = l.Events[:start]
	vals, err := rs.replay(&sub, banks)
	if err != nil {
		return -1, nil
	}
	best, bestVals := -1, pcr.Values(nil)
	for k := start; k < n; k++ {
		if covers(vals) {
			best, bestVals = k, vals
		}
		sub.Events = l.Events[k : k+1]
		if vals, err = sub.Replay(eventlog.ReplayOptions{Banks: banks, From: vals}); err != nil {
			break
		}
	}
	return best, bestVals
}

// advance records the newly verified entries of l (their anomalies set by
// CheckDigests), whose replay ended at vals, and appraises each against
// the RIMs and the configuration policy.
func (rs *runtimeState) advance(l *eventlog.Log, vals pcr.Values, pol *Policy) {
	rs.vals = keepPCRs(vals)
	if len(l.Events) == 0 {
		return
	}
	rs.seen, rs.last = true, uint64(l.Events[len(l.Events)-1].Seq)
	// The strings of a finding are built only for an entry that makes one
	// and while its list has room: most entries are approved, and a
	// device with thousands of unknown files must not cost thousands of
	// formatted names per poll.
	for i := range l.Events {
		e := &l.Events[i]
		if e.IMA == nil {
			continue
		}
		name := e.IMA.FileName
		where := func() string { return rs.logType + " entry " + strconv.Itoa(e.Seq) }
		h := func() string {
			return e.IMA.FileHashAlgName + ":" + hex.EncodeToString(e.IMA.FileHash[:min(8, len(e.IMA.FileHash))])
		}
		if e.Violation() {
			rs.finding().violations.addf(func() string { return name + " (" + where() + ")" })
			continue
		}
		if e.Anomaly != "" {
			rs.finding().forged.addf(func() string { return name + " (" + where() + "): " + e.Anomaly })
		}
		if name == "boot_aggregate" {
			continue
		}
		if slices.Contains(pol.ConfigFiles, name) {
			if why := pol.configFinding(rs.rims, rs.model, name, e.IMA.FileHashAlg, e.IMA.FileHash); why != "" {
				rs.finding().config.addf(func() string { return name + " (" + where() + ", " + h() + ") " + why })
			}
			continue
		}
		m := rs.rims.LookupFor(e.IMA.FileHashAlg, e.IMA.FileHash, rs.model)
		if len(m) == 0 {
			rs.finding().unknown.addf(func() string { return name + " (" + h() + ")" })
			continue
		}
		if c, ok := rs.rims.CurrentFor(m, rs.model); !ok {
			rs.finding().rollback.addf(func() string {
				return name + " (" + where() + ") is " + c.Name + " " + c.Ver + ", superseded by a newer signed RIM"
			})
		}
	}
}

// configFinding says why a measured configuration is not approved ("" when
// it is): a signed RIM that is still current lists its digest, or the
// operator's allow-list does.
func (pol *Policy) configFinding(idx *rim.Index, model, path string, a alg.ID, h []byte) string {
	if m := idx.LookupFor(a, h, model); len(m) > 0 {
		if c, ok := idx.CurrentFor(m, model); ok {
			return ""
		} else {
			return fmt.Sprintf("is %s %s, superseded by a newer signed RIM", c.Name, c.Ver)
		}
	}
	for _, ac := range pol.ConfigAllow {
		if (ac.Path == "" || ac.Path == path) && ac.Alg == a && bytes.Equal(ac.Digest, h) {
			return ""
		}
	}
	return "is in no signed RIM and not on the configuration allow-list"
}

// runtimePolicy turns what the runtime logs showed into claims. A device
// whose runtime measurements are all approved, after an approved boot,
// ran only approved executables at boot and run time: AR4SI executables 2
// (ApprovedRuntimeClaim) rather than 3 (ApprovedBootClaim, boot only).
func (p *poll) runtimePolicy() {
	r, tv := p.r, &p.r.Vector
	clean, files, any := true, true, false
	for _, rs := range p.st.runtime {
		if !rs.seen {
			continue
		}
		any = true
		f, t := rs.found, rs.logType
		if f == nil {
			continue // nothing found
		}
		if !f.forged.empty() {
			r.claim(&tv.Executables, ear.ContraindicatedRuntimeClaim, "executables: "+t+" entries whose template digest is not the hash of their data: "+f.forged.String())
		}
		if !f.rollback.empty() {
			r.claim(&tv.Executables, ear.UnsafeRuntimeClaim, "executables: rollback at run time: "+f.rollback.String())
		}
		if !f.config.empty() {
			r.claim(&tv.Configuration, ear.UnsafeConfigClaim, "configuration: "+f.config.String())
		}
		unknown, why := ear.UnrecognizedFilesClaim, ""
		if p.v.Policy.NoUnknownFiles {
			unknown, why = ear.ContraindicatedFilesClaim, " (the policy "+p.v.Policy.Name+" allows none)"
		}
		if !f.violations.empty() {
			r.claim(&tv.FileSystem, unknown, "file-system: IMA measurement violations, what was read is unknown"+why+": "+f.violations.String())
		}
		if !f.unknown.empty() {
			r.claim(&tv.FileSystem, unknown, "file-system: not in any signed RIM"+why+": "+f.unknown.String())
			r.claim(&tv.Executables, ear.UnrecognizedRuntimeClaim, "")
		}
		clean = clean && rs.clean()
		files = files && f.unknown.empty() && f.violations.empty()
	}
	if !any {
		return
	}
	if files {
		r.claim(&tv.FileSystem, ear.ApprovedFilesClaim, "")
	}
	if clean && tv.Executables == ear.ApprovedBootClaim {
		tv.Executables = ear.ApprovedRuntimeClaim
	}
}

// findings is a bounded list of findings for a reason: past maxNames the
// rest are counted.
type findings struct {
	items []string
	more  int
	text  string // items sorted and joined; "" when they changed
}

func (f *findings) add(s string) { f.addf(func() string { return s }) }

// addf adds the finding text() builds, calling it only when the list has
// room for it.
func (f *findings) addf(text func() string) {
	if len(f.items) == maxNames {
		f.more++
		return
	}
	f.text = ""
	f.items = append(f.items, text())
}

func (f *findings) empty() bool { return len(f.items) == 0 }

// String lists the findings sorted, with the count of those not named.
func (f *findings) String() string {
	if f.text == "" {
		f.text = strings.Join(slices.Sorted(slices.Values(f.items)), ", ")
	}
	if f.more > 0 {
		return f.text + " and " + strconv.Itoa(f.more) + " more"
	}
	return f.text
}
