package eventlog

import (
	"bytes"
	"fmt"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// Quirk is a known firmware or kernel deviation from the specs that makes
// a genuine log fail strict replay. Quirks are tried only after strict
// replay has failed, one at a time, and the one that made the log replay
// is named in the result so that an operator sees the concession.
type Quirk struct {
	Name string
	// PCR is the only PCR the quirk may change.
	PCR int
	// Extra returns events to append after the log's own; nil skips.
	Extra func(l *Log, bank alg.ID) []Event
	// Locality overrides the startup locality seeding PCR 0 when >= 0.
	Locality int
}

const (
	ebsInvocation = "Exit Boot Services Invocation"
	ebsSuccess    = "Exit Boot Services Returned with Success"
	ebsFailure    = "Exit Boot Services Returned with Failure"
)

func efiActions(pcrIdx int, actions ...string) func(*Log, alg.ID) []Event {
	return func(l *Log, b alg.ID) []Event {
		var out []Event
		for _, a := range actions {
			out = append(out, Event{Seq: -1, PCR: pcrIdx, IndexType: celPCR, Type: uint32(EvEFIAction), Data: []byte(a),
				Digests: []Digest{{Alg: b, Value: b.Sum([]byte(a))}}})
		}
		return out
	}
}

// Quirks is the vendor-quirk table.
var Quirks = []Quirk{
	// Linux copies the firmware log before ExitBootServices, but the
	// firmware extends the EBS actions into PCR 5 afterwards (seen on GCE
	// and many laptops; go-attestation carries the same workaround).
	{Name: "ebs-invocation-success-not-logged", PCR: 5, Extra: efiActions(5, ebsInvocation, ebsSuccess), Locality: -1},
	{Name: "ebs-invocation-failure-not-logged", PCR: 5, Extra: efiActions(5, ebsInvocation, ebsFailure), Locality: -1},
	{Name: "ebs-invocation-failure-success-not-logged", PCR: 5, Extra: efiActions(5, ebsInvocation, ebsFailure, ebsSuccess), Locality: -1},
	// Some firmware logs a StartupLocality event although TPM2_Startup ran
	// at locality 0, or vice versa.
	{Name: "startup-locality-0", PCR: 0, Locality: 0},
	{Name: "startup-locality-3", PCR: 0, Locality: 3},
}

// VerifyResult says whether a log explains a set of PCR values.
type VerifyResult struct {
	Replayed pcr.Values
	// Mismatches lists PCRs that differ ("sha256 PCR 4: got .., want ..").
	Mismatches []string
	// Quirks names the quirks that had to be applied.
	Quirks []string
	// Anomalies lists events whose digest contradicts their data.
	Anomalies []string
}

// OK reports whether the log reproduces every expected PCR.
func (r *VerifyResult) OK() bool { return len(r.Mismatches) == 0 }

// Verify replays l in the banks of want and compares every PCR want holds.
// PCRs the log does not touch must hold their reset value. When strict
// replay fails, each quirk affecting a failing PCR is tried; IMA logs try
// the pre-5.8 padding rule. A mismatch is a result, not an error; errors
// mean the log cannot be replayed in a wanted bank at all.
func (l *Log) Verify(want pcr.Values) (*VerifyResult, error) {
	res := &VerifyResult{Replayed: pcr.Values{}}
	l.CheckDigests(want.Banks()...)
	for i := range l.Events {
		if a := l.Events[i].Anomaly; a != "" {
			res.Anomalies = append(res.Anomalies, fmt.Sprintf("event %d (PCR %d): %s", l.Events[i].Seq, l.Events[i].PCR, a))
		}
	}
	for _, b := range want.Banks() {
		got, err := l.Replay(ReplayOptions{Banks: []alg.ID{b}})
		if err != nil {
			return nil, err
		}
		vals := fillReset(got[b], want[b], b, l.StartupLocality)
		var diff []string
		if !covers(vals, want[b]) {
			diff = pcr.Values{b: vals}.Diff(pcr.Values{b: want[b]})
		}
		if len(diff) > 0 && (l.Format == FormatIMA || l.Format == FormatIMAASCII) {
			if l.DetectIMARule(b, want) == "pad-sha1" {
				got, _ = l.Replay(ReplayOptions{Banks: []alg.ID{b}, IMAPadSHA1: true})
				vals = fillReset(got[b], want[b], b, 0)
				diff = nil
				res.Quirks = append(res.Quirks, fmt.Sprintf("ima-pad-sha1 (%v: kernel before 5.8)", b))
			}
		}
		if len(diff) > 0 && l.Format == FormatTCG {
			for _, q := range Quirks {
				w, ok := want[b][q.PCR]
				if !ok || bytes.Equal(vals[q.PCR], w) {
					continue // the quirk's PCR is fine or not wanted
				}
				qv, err := l.replayWithQuirk(b, q)
				if err != nil {
					continue
				}
				if bytes.Equal(qv[q.PCR], w) {
					vals[q.PCR] = qv[q.PCR]
					res.Quirks = append(res.Quirks, fmt.Sprintf("%s (%v PCR %d)", q.Name, b, q.PCR))
				}
			}
			diff = pcr.Values{b: vals}.Diff(pcr.Values{b: want[b]})
		}
		res.Replayed[b] = vals
		res.Mismatches = append(res.Mismatches, diff...)
	}
	return res, nil
}

func (l *Log) replayWithQuirk(b alg.ID, q Quirk) (map[int][]byte, error) {
	c := *l
	if q.Locality >= 0 {
		if l.StartupLocality == uint8(q.Locality) {
			return nil, fmt.Errorf("quirk does not apply")
		}
		c.StartupLocality = uint8(q.Locality)
	}
	var extra []Event
	if q.Extra != nil {
		extra = q.Extra(l, b)
	}
	return c.replayDigests(b, extra, nil)
}

// fillReset adds, for every PCR in want that the log never touched, its
// reset value: a PCR no event extended must still be at reset.
func fillReset(got, want map[int][]byte, b alg.ID, locality uint8) map[int][]byte {
	out := map[int][]byte{}
	for i, v := range got {
		out[i] = v
	}
	for i := range want {
		if _, ok := out[i]; !ok {
			v := pcr.Initial(b, i)
			if i == 0 {
				v[len(v)-1] = locality
			}
			out[i] = v
		}
	}
	return out
}

// covers reports whether got holds every wanted PCR with the wanted value;
// the common, matching case needs no formatting.
func covers(got, want map[int][]byte) bool {
	for i, w := range want {
		if !bytes.Equal(got[i], w) {
			return false
		}
	}
	return true
}
