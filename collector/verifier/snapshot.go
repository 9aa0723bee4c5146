package verifier

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// A snapshot is what the verifier keeps of one device between polls, in
// a form that outlives the process: the TPM clock, where each log ended
// and the PCR values replayed up to there, and what the verified entries
// showed — never the logs. A collector stores it with each result and
// restores it when it starts, so that its first poll of a device it knew
// is incremental, and a TPM whose counters went back while the collector
// was down is still caught.
type snapshot struct {
	Version int `json:"v"`
	// Keys are the SHA-256 of the identity keys the device showed: the
	// state carries over only to a device showing one of them.
	Keys [][]byte               `json:"keys"`
	TPMs map[string]tpmSnapshot `json:"tpms"` // "" the device's own TPM, else the line card
}

const snapshotVersion = 1

type tpmSnapshot struct {
	Clock   *quote.ClockInfo  `json:"clock,omitempty"`
	Bios    *biosSnapshot     `json:"bios,omitempty"`
	Runtime []runtimeSnapshot `json:"runtime,omitempty"`
	Cards   map[string][]byte `json:"cards,omitempty"`
}

type biosSnapshot struct {
	Last    uint64          `json:"last"`
	Banks   []alg.ID        `json:"banks"`
	Vals    pcr.Values      `json:"vals"`
	RIMs    []byte          `json:"rims"` // digest of the index the findings were made against
	Vector  ear.TrustVector `json:"vector"`
	Reasons []string        `json:"reasons,omitempty"`
}

type runtimeSnapshot struct {
	Type  string     `json:"type"`
	Banks []alg.ID   `json:"banks"`
	RIMs  []byte     `json:"rims"`
	Model string     `json:"model"`
	Seen  bool       `json:"seen"`
	Last  uint64     `json:"last"`
	Vals  pcr.Values `json:"vals"`
	// The findings, in the order of runtimeState's fields: unknown,
	// rollback, config, forged, violations.
	Findings [5]findingsSnapshot `json:"findings"`
}

type findingsSnapshot struct {
	Items []string `json:"items,omitempty"`
	More  int      `json:"more,omitempty"`
}

// Snapshot returns the verifier's state of device and its line cards, for
// Restore; nil when it holds none.
func (v *Verifier) Snapshot(device string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.state[device]
	if st == nil || !st.clockSeen {
		return nil, nil
	}
	s := snapshot{Version: snapshotVersion, TPMs: map[string]tpmSnapshot{}}
	if st.sup != nil {
		for _, c := range st.sup.certs {
			s.Keys = append(s.Keys, slices.Clone(c.spki[:]))
		}
	} else {
		for _, k := range st.keys {
			s.Keys = append(s.Keys, slices.Clone(k[:]))
		}
	}
	if len(s.Keys) == 0 {
		return nil, nil // nothing to bind it to
	}
	s.TPMs[""] = st.snapshot()
	// The line cards it knows, by name (not a scan of every state: a
	// snapshot is taken after every poll of a fleet's).
	for card, key := range st.cards {
		name := cardKey(device, card, key)
		if ts := v.state[name]; ts != nil && ts.clockSeen {
			s.TPMs[strings.TrimPrefix(name, device+"\x00")] = ts.snapshot()
		}
	}
	return json.Marshal(s)
}

func (st *deviceState) snapshot() tpmSnapshot {
	clock := st.clock
	ts := tpmSnapshot{Clock: &clock}
	if st.biosSeen && st.boot != nil && (st.bootRIMs != nil || st.bootDigest != [32]byte{}) {
		d := st.bootDigest
		if st.bootRIMs != nil {
			d = st.bootRIMs.Digest()
		}
		ts.Bios = &biosSnapshot{Last: st.biosLast, Banks: st.biosBanks, Vals: st.biosVals.values(), RIMs: d[:],
			Vector: st.boot.Vector, Reasons: st.boot.Reasons}
	}
	for _, rs := range st.runtime {
		t := rs.logType
		d := rs.digest
		if rs.rims != nil {
			d = rs.rims.Digest()
		}
		out := runtimeSnapshot{Type: t, Banks: rs.banks, RIMs: d[:], Model: rs.model, Seen: rs.seen, Last: rs.last, Vals: rs.vals.values()}
		if rs.found != nil {
			for i, f := range rs.found.list() {
				out.Findings[i] = findingsSnapshot{Items: f.items, More: f.more}
			}
		}
		ts.Runtime = append(ts.Runtime, out)
	}
	if len(st.cards) > 0 {
		ts.Cards = map[string][]byte{}
		for name, k := range st.cards {
			ts.Cards[name] = []byte(k)
		}
	}
	return ts
}

// Knows reports whether the verifier holds a state of device.
func (v *Verifier) Knows(device string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state[device] != nil
}

// Forget drops the verifier's state of device and its line cards: its
// next appraisal starts afresh (another collector appraised it since).
func (v *Verifier) Forget(device string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.drop(device)
}

// drop deletes the states of device and its line cards, by the cards it
// knew (a scan of every state would make restoring a fleet quadratic);
// v.mu held.
func (v *Verifier) drop(device string) {
	if old := v.state[device]; old != nil {
		for card, key := range old.cards {
			delete(v.state, cardKey(device, card, key))
		}
	}
	delete(v.state, device)
}

// Restore sets the verifier's state of device (and its line cards) from
// a Snapshot. A snapshot it cannot read is an error and changes nothing:
// the device is then appraised afresh.
func (v *Verifier) Restore(device string, b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("verifier: snapshot of %s: %w", device, err)
	}
	if s.Version != snapshotVersion {
		return fmt.Errorf("verifier: snapshot of %s: version %d, want %d", device, s.Version, snapshotVersion)
	}
	var keys [][32]byte
	for _, k := range s.Keys {
		if len(k) != 32 {
			return fmt.Errorf("verifier: snapshot of %s: a key hash of %d bytes", device, len(k))
		}
		keys = append(keys, [32]byte(k))
	}
	if len(keys) == 0 {
		return fmt.Errorf("verifier: snapshot of %s: no identity keys", device)
	}
	states := map[string]*deviceState{}
	for card, ts := range s.TPMs {
		st, err := ts.state()
		if err != nil {
			return fmt.Errorf("verifier: snapshot of %s: %w", device, err)
		}
		name := device
		if card != "" {
			name += "\x00" + card
		}
		states[name] = st
	}
	own := states[device]
	if own == nil {
		return fmt.Errorf("verifier: snapshot of %s: no state of its own TPM", device)
	}
	own.keys = keys
	v.mu.Lock()
	defer v.mu.Unlock()
	v.drop(device) // the states it replaces
	for name, st := range states {
		v.state[name] = st
	}
	return nil
}

func (ts tpmSnapshot) state() (*deviceState, error) {
	st := &deviceState{}
	if ts.Clock == nil {
		return nil, fmt.Errorf("no clock")
	}
	st.clock, st.clockSeen = *ts.Clock, true
	digest := func(b []byte) ([32]byte, error) {
		if len(b) != 32 {
			return [32]byte{}, fmt.Errorf("a RIM index digest of %d bytes", len(b))
		}
		return [32]byte(b), nil
	}
	if b := ts.Bios; b != nil {
		d, err := digest(b.RIMs)
		if err != nil {
			return nil, err
		}
		if err := checkBanks(b.Banks, b.Vals); err != nil {
			return nil, fmt.Errorf("bios: %w", err)
		}
		st.biosSeen, st.biosLast, st.biosBanks, st.biosVals = true, b.Last, b.Banks, keepPCRs(b.Vals)
		st.boot, st.bootDigest = &keptClaims{Vector: b.Vector, Reasons: b.Reasons}, d
	}
	for _, r := range ts.Runtime {
		if r.Type != logNetequip && r.Type != logIMA {
			return nil, fmt.Errorf("a runtime log of type %q", r.Type)
		}
		if st.runtime.of(r.Type) != nil {
			return nil, fmt.Errorf("the %s log twice", r.Type)
		}
		d, err := digest(r.RIMs)
		if err != nil {
			return nil, err
		}
		if err := checkBanks(r.Banks, r.Vals); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Type, err)
		}
		rs := &runtimeState{logType: r.Type, banks: r.Banks, digest: d, model: r.Model, seen: r.Seen, last: r.Last, vals: keepPCRs(r.Vals)}
		found := &runtimeFindings{}
		for i, f := range found.list() {
			if len(r.Findings[i].Items) > maxNames {
				return nil, fmt.Errorf("%s: %d findings, at most %d are kept", r.Type, len(r.Findings[i].Items), maxNames)
			}
			f.items, f.more = r.Findings[i].Items, r.Findings[i].More
			if f.items != nil || f.more != 0 {
				rs.found = found
			}
		}
		st.runtime.set(rs)
	}
	if len(ts.Cards) > 0 {
		st.cards = map[string]string{}
		for name, k := range ts.Cards {
			st.cards[name] = string(k)
		}
	}
	return st, nil
}

// checkBanks checks that restored PCR values are of the banks they claim
// and of their sizes: they are the start of the next replay.
func checkBanks(banks []alg.ID, vals pcr.Values) error {
	if len(banks) == 0 {
		return fmt.Errorf("no banks")
	}
	for b, m := range vals {
		if !slices.Contains(banks, b) || !b.IsHash() {
			return fmt.Errorf("PCR values of bank %v", b)
		}
		for i, val := range m {
			if i < 0 || i > 23 || len(val) != b.Size() {
				return fmt.Errorf("PCR %d of bank %v: %d bytes", i, b, len(val))
			}
		}
	}
	return nil
}
