package verifier

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
)

// maxUncovered bounds how many log entries may have been measured between
// the quote and the log retrieval; a device that is busier than that is
// re-challenged on the next poll rather than searched at length.
const maxUncovered = 64

// maxUnknownNames bounds the unrecognised files named in a result; the
// rest are counted.
const maxUnknownNames = 100

// netequipState is what the verifier keeps of a device's netequip_boot
// log between polls: where it stopped, the PCR values up to there, and
// what it found, instead of the entries themselves.
type netequipState struct {
	bank alg.ID
	rims *rim.Index // the index the findings were made against
	seen bool       // last is valid
	last uint64     // sequence number of the last verified entry
	vals pcr.Values // replay of every verified entry
	// unknown names the files measured so far that no signed RIM lists.
	unknown     []string
	unknownMore int
	unknownText string // the names sorted and joined, "" when they changed
}

// replay continues the verified replay with the new entries in l.
func (st *netequipState) replay(l *eventlog.Log, bank alg.ID) (pcr.Values, error) {
	if len(l.Events) == 0 {
		out := pcr.Values{}
		for i, v := range st.vals[bank] {
			out.Set(bank, i, v)
		}
		return out, nil
	}
	return l.Replay(eventlog.ReplayOptions{Banks: []alg.ID{bank}, From: st.vals})
}

// coveredPrefix finds the longest prefix of l's entries, leaving out at
// most maxUncovered, whose replay the quote covers (covers reports it):
// its length and values, or -1.
func (st *netequipState) coveredPrefix(l *eventlog.Log, bank alg.ID, covers func(pcr.Values) bool) (int, pcr.Values) {
	n := len(l.Events)
	start := max(0, n-maxUncovered)
	sub := *l
	sub.Events = l.Events[:start]
	vals, err := st.replay(&sub, bank)
	if err != nil {
		return -1, nil
	}
	best, bestVals := -1, pcr.Values(nil)
	for k := start; k < n; k++ {
		if covers(vals) {
			best, bestVals = k, vals
		}
		sub.Events = l.Events[k : k+1]
		if vals, err = sub.Replay(eventlog.ReplayOptions{Banks: []alg.ID{bank}, From: vals}); err != nil {
			break
		}
	}
	return best, bestVals
}

// advance records the newly verified entries of l, whose replay ended at
// vals, and returns how many there were.
func (st *netequipState) advance(l *eventlog.Log, vals pcr.Values, bank alg.ID, rims *rim.Index) int {
	st.bank, st.rims, st.vals = bank, rims, vals
	if len(l.Events) == 0 {
		return 0
	}
	st.seen, st.last = true, uint64(l.Events[len(l.Events)-1].Seq)
	for _, e := range l.Events {
		if e.IMA == nil || e.IMA.FileName == "boot_aggregate" || e.IMA.FileName == "/etc/riv/startup-config" {
			continue
		}
		if len(rims.Lookup(e.IMA.FileHashAlg, e.IMA.FileHash)) > 0 {
			continue
		}
		if len(st.unknown) == maxUnknownNames {
			st.unknownMore++
			continue
		}
		st.unknownText = ""
		st.unknown = append(st.unknown, fmt.Sprintf("%s (%s:%x)", e.IMA.FileName, e.IMA.FileHashAlgName, e.IMA.FileHash[:min(8, len(e.IMA.FileHash))]))
	}
	return len(l.Events)
}

// unknownFiles lists the unrecognised files for a reason, sorted.
func (st *netequipState) unknownFiles() string {
	if st.unknownText == "" {
		st.unknownText = strings.Join(slices.Sorted(slices.Values(st.unknown)), ", ")
	}
	if st.unknownMore > 0 {
		return st.unknownText + " and " + strconv.Itoa(st.unknownMore) + " more"
	}
	return st.unknownText
}
