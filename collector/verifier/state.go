package verifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/rim"
)

// deviceState is what the verifier keeps of a device between polls.
type deviceState struct {
	// The TPM's clock and counters at the last appraisal. A quote whose
	// counters are lower is a rollback and never lowers them.
	clock     quote.ClockInfo
	clockSeen bool // beside biosSeen: the state takes 256 bytes, not 288
	// The bios log is not kept, only where it ended (biosLast, when
	// biosSeen), its replay into biosBanks, and what its appraisal found
	// against bootRIMs. It only grows until the next reboot, usually not
	// at all: a poll asks for the events after biosLast and reuses all
	// of it when there are none. A log that grew, other banks or other
	// RIMs fetch it whole again. bootDigest is bootRIMs' digest; a state
	// restored from a snapshot has only the digest until an index with
	// that digest is seen.
	biosSeen   bool
	biosLast   uint64
	biosBanks  []alg.ID
	biosVals   keptPCRs
	boot       *keptClaims
	bootRIMs   *rim.Index
	bootDigest [32]byte
	// The runtime logs (netequip_boot, ima) are not kept: they grow for
	// as long as the device runs, so each poll replays and appraises only
	// the new entries, continuing from what was verified before.
	runtime runtimeStates
	// What the device supports (banks, log types, and of its
	// certificates their keys and digests, not the certificates),
	// refetched when the transport presents another key than the cached
	// identity's, after a reboot, hourly, or when a verdict on its
	// certificates is no longer cached.
	sup     *deviceSupport
	supTime time.Time
	// inbandBad are the RIMs the device lists whose bytes are not what it
	// said (by the digest listed), with the reason, claimed on every poll
	// until the device reboots, without fetching them again.
	inbandBad map[string]string
	// inbandPending are the device's RIMs that failed for what the index
	// held (a tag-id another tag has, a support RIM no base lists), with
	// the index they were judged against: judged again once it changed.
	inbandPending    map[string]string
	inbandPendingIdx *rim.Index
	// cards are the line cards of a device with several TPMs, by name,
	// with their attestation keys: a card that vanishes or whose key
	// changes between reboots is a claim.
	cards map[string]string
	// keys are the SHA-256 of the identity keys of a state restored from
	// a snapshot (sup is nil then): it carries over only to a device that
	// shows one of them.
	keys [][32]byte
}

// keptClaims are the claims and reasons of a Result, kept between polls
// without the rest of one (240 bytes).
type keptClaims struct {
	Vector  ear.TrustVector
	Reasons []string
}

// bootFor reports whether the kept boot findings are for banks and rims.
func (st *deviceState) bootFor(banks []alg.ID, rims *rim.Index) bool {
	if st.boot == nil || !slices.Equal(st.biosBanks, banks) {
		return false
	}
	return sameIndex(&st.bootRIMs, st.bootDigest, rims)
}

// sameIndex reports whether findings made against *kept (or, restored
// from a snapshot, against an index with digest d) hold for idx, and
// adopts idx when it has that digest.
func sameIndex(kept **rim.Index, d [32]byte, idx *rim.Index) bool {
	switch {
	case *kept == idx:
		return true
	case *kept == nil && d != [32]byte{} && idx.Digest() == d:
		*kept = idx
		return true
	}
	return false
}

// pendingFor is the reason a RIM of the device failed against idx, if
// that is still the index.
func (st *deviceState) pendingFor(d string, idx *rim.Index) string {
	if st == nil || st.inbandPendingIdx != idx {
		return ""
	}
	return st.inbandPending[d]
}

// Log types of RFC 9684.
const (
	logBIOS     = "bios"
	logIMA      = "ima"
	logNetequip = "netequip_boot"
)

// logTypes are the logs to fetch: those the device announces, or bios and
// netequip_boot when it announces none (no YANG library).
func logTypes(sup *deviceSupport) []string {
	if sup == nil || sup.LogTypes == nil {
		return []string{logBIOS, logNetequip}
	}
	var out []string
	for _, t := range []string{logBIOS, logNetequip, logIMA} {
		if slices.Contains(sup.LogTypes, t) {
			out = append(out, t)
		}
	}
	return out
}

// requests returns the log retrievals of the next poll: each log from
// after the last event kept or verified for these banks and RIMs (from
// the start otherwise).
func (st *deviceState) requests(sup *deviceSupport, banks []alg.ID, rims *rim.Index) []evidence.LogRequest {
	var out []evidence.LogRequest
	for _, t := range logTypes(sup) {
		req := evidence.LogRequest{Type: t}
		switch {
		case st == nil:
		case t == logBIOS:
			if st.biosSeen && st.bootFor(banks, rims) {
				n := st.biosLast
				req.After = &n
			}
		default:
			if rs := st.runtime.of(t); rs != nil && rs.matches(banks, rims) && rs.seen {
				n := rs.last
				req.After = &n
			}
		}
		out = append(out, req)
	}
	return out
}

// clock judges TPMS_CLOCK_INFO against what the device's TPM said before
// (TPM 2.0 Part 1 §36: resetCount counts TPM Resets, restartCount TPM
// Restarts since the last Reset, and Clock only advances while the TPM
// runs). Counters going back, or the clock going back within one reset
// epoch, mean a rolled-back or cloned TPM state: contraindicated, and the
// appraisal ends. A Reset or Restart is re-attestation: the logs start
// over. safe = 0 (Clock may have been lost since the last orderly
// shutdown) is a warning. It returns false when a claim ended the poll.
func (p *poll) clock() bool {
	v, r, ci := p.v, p.r, p.attest.ClockInfo
	v.mu.Lock()
	st := v.state[p.device]
	if st == nil {
		st = &deviceState{}
		v.state[p.device] = st
	}
	prev, seen := st.clock, st.clockSeen
	var rollback string
	switch {
	case !seen:
	case ci.ResetCount < prev.ResetCount:
		rollback = fmt.Sprintf("resetCount went back from %d to %d", prev.ResetCount, ci.ResetCount)
	case ci.ResetCount == prev.ResetCount && ci.RestartCount < prev.RestartCount:
		rollback = fmt.Sprintf("restartCount went back from %d to %d within reset %d", prev.RestartCount, ci.RestartCount, ci.ResetCount)
	case ci.ResetCount == prev.ResetCount && ci.Clock < prev.Clock:
		rollback = fmt.Sprintf("clock went back from %d ms to %d ms within reset %d", prev.Clock, ci.Clock, ci.ResetCount)
	}
	if rollback == "" {
		if seen && (ci.ResetCount != prev.ResetCount || ci.RestartCount != prev.RestartCount) {
			r.Rebooted, r.Restarted = true, ci.ResetCount == prev.ResetCount
		}
		if !seen || r.Rebooted {
			// Logs start over; the certificates are refetched next poll.
			*st = deviceState{sup: st.sup}
		}
		st.clock, st.clockSeen = ci, true
	}
	v.mu.Unlock()
	p.st = st
	if rollback != "" {
		r.claim(&r.Vector.Hardware, ear.ContraindicatedHardwareClaim, "hardware: the TPM's "+rollback+" since the last appraisal: its state was rolled back or cloned")
		return false
	}
	if !ci.Safe {
		r.claim(&r.Vector.Hardware, ear.UnsafeHardwareClaim, "hardware: the TPM clock is not safe (safe = 0): it may have lost time since the last orderly shutdown, so its clock and counters cannot prove freshness on their own")
	}
	return true
}

// fetchLogs gets every log the poll needs: what the pipelined exchange
// brought when it starts where the (possibly reset) state needs it, else
// a retrieval of its own. A log the device announces but cannot deliver
// is a claim; false means one ended the poll.
func (p *poll) fetchLogs(ctx context.Context) (bool, error) {
	need := p.st.requests(p.sup, p.banks, p.rims)
	p.runtime = map[string]*eventlog.Log{}
	for _, req := range need {
		l, err := p.log(ctx, req)
		if err == nil && req.Type == logBIOS && req.After != nil && len(l.Events) > 0 {
			// The boot log grew after it was verified, and it is not
			// kept: fetch it whole.
			req.After = nil
			l, err = p.log(ctx, req)
		}
		if err != nil {
			if errors.Is(err, evidence.ErrRefused) {
				p.r.claim(&p.r.Vector.Executables, ear.UnexpectedEvidenceClaim, fmt.Sprintf("%s log: the device announces it but answers %v", req.Type, err))
				return false, nil
			}
			return false, fmt.Errorf("%s: %s log: %w", p.device, req.Type, err)
		}
		switch {
		case req.Type != logBIOS:
			p.runtime[req.Type] = l
		case req.After != nil:
			p.biosKept = true // the usual case: the boot log ended long ago
		default:
			p.bios = l
		}
	}
	return true, nil
}

// log returns the retrieval req: what the pipelined exchange brought, or
// a retrieval of its own.
func (p *poll) log(ctx context.Context, req evidence.LogRequest) (*eventlog.Log, error) {
	for k, done := range p.reqs {
		if done.Type == req.Type && sameAfter(done.After, req.After) {
			return p.logs[k].Log, p.logs[k].Err
		}
	}
	l, _, err := p.s.Logs(ctx, req.Type, req.After)
	return l, err
}

func sameAfter(a, b *uint64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
