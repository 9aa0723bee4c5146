package snmp

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// SNMP error-status values a SET can end with (RFC 3416 §3).
const (
	errWrongType           = 7
	errWrongLength         = 8
	errWrongValue          = 10
	errNoCreation          = 11
	errInconsistentValue   = 12
	errResourceUnavailable = 13
	errInconsistentName    = 18
)

// fragmentSize is rivFragmentSize: a fragment and its varbind fit, with
// the headers of an authPriv message, in the 484 octets every SNMP
// engine accepts (RFC 3417 §3.2).
const fragmentSize = 256

// A challenge is one row of rivChallengeTable.
type challenge struct {
	index    uint32
	nonce    []byte
	bank     alg.ID
	sel      [3]byte
	certName string
	// selection is what the TPM quotes: rivChallengeSelection when set,
	// else the bank and mask.
	selection []pcr.Selection
	created   time.Time

	// Set by the quote when it ends.
	state       int
	err         string
	attest, sig []byte
}

// challenges is rivChallengeTable and its quotes.
type challenges struct {
	lifetime time.Duration
	maxRows  int

	mu   sync.Mutex
	rows map[uint32]*challenge
}

// expire drops the rows older than the lifetime. Callers hold c.mu.
func (c *challenges) expire(now time.Time) {
	for i, r := range c.rows {
		if now.Sub(r.created) >= c.lifetime {
			delete(c.rows, i)
		}
	}
}

// view returns the instances of rivChallengeTable and rivQuoteTable.
func (c *challenges) view() *sorted {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(time.Now())
	var out []varbind
	col := func(n, idx uint32, v []byte) {
		out = append(out, varbind{oid(mibdef.ChallengeEntry.Child(n, idx)), v})
	}
	for _, r := range c.rows {
		col(mibdef.ChallengeNonce, r.index, appendTLV(nil, tagOctets, r.nonce))
		col(mibdef.ChallengeBank, r.index, appendUint(nil, tagGauge32, uint64(r.bank)))
		col(mibdef.ChallengePcrSelect, r.index, appendTLV(nil, tagOctets, r.sel[:]))
		col(mibdef.ChallengeCertName, r.index, appendTLV(nil, tagOctets, []byte(r.certName)))
		col(mibdef.ChallengeState, r.index, appendInt(nil, tagInteger, int64(r.state)))
		col(mibdef.ChallengeError, r.index, appendTLV(nil, tagOctets, []byte(r.err)))
		col(mibdef.ChallengeAttestLength, r.index, appendUint(nil, tagGauge32, uint64(len(r.attest))))
		col(mibdef.ChallengeSignatureLength, r.index, appendUint(nil, tagGauge32, uint64(len(r.sig))))
		col(mibdef.ChallengeRowStatus, r.index, appendInt(nil, tagInteger, mibdef.RowActive))
		col(mibdef.ChallengeSelection, r.index, appendTLV(nil, tagOctets, quote.AppendSelection(nil, r.selection)))
		for part, b := range map[uint32][]byte{mibdef.QuoteAttest: r.attest, mibdef.QuoteSignature: r.sig} {
			for f := uint32(1); f <= fragments(len(b)); f++ {
				out = append(out, varbind{oid(mibdef.QuoteData.Child(r.index, part, f)), appendTLV(nil, tagOctets, fragment(b, f))})
			}
		}
	}
	slices.SortFunc(out, func(a, b varbind) int { return a.oid.cmp(b.oid) })
	types := []oid{oid(mibdef.QuoteData)}
	for _, n := range []uint32{mibdef.ChallengeNonce, mibdef.ChallengeBank, mibdef.ChallengePcrSelect, mibdef.ChallengeCertName, mibdef.ChallengeState,
		mibdef.ChallengeError, mibdef.ChallengeAttestLength, mibdef.ChallengeSignatureLength, mibdef.ChallengeRowStatus, mibdef.ChallengeSelection} {
		types = append(types, oid(mibdef.ChallengeEntry.Child(n)))
	}
	return &sorted{vbs: out, types: types}
}

// fragments is how many fragments b of n octets takes.
func fragments(n int) uint32 { return uint32((n + fragmentSize - 1) / fragmentSize) }

// fragment returns fragment f (from 1) of b; f must be in range.
func fragment(b []byte, f uint32) []byte {
	lo := int(f-1) * fragmentSize
	return b[lo:min(lo+fragmentSize, len(b))]
}

// setVarbind is one varbind of a SetRequest.
type setVarbind struct {
	oid oid
	tag byte
	val []byte
}

// rowSet is what one SET asks of one row.
type rowSet struct {
	index  uint32
	status int64          // 0 when the SET does not name the RowStatus
	cols   map[uint32]int // column → position of its varbind
}

// set applies a SetRequest to the challenge table, all or nothing (RFC
// 3416 §4.2.5): it returns 0 and starts the quotes of the rows created,
// or an error-status and the 1-based index of the varbind that caused it.
func (s *Server) set(ctx context.Context, user string, vbs []setVarbind) (status, index int64) {
	return s.setOrTest(ctx, user, vbs, false)
}

// testSet is set's checks without the change (AgentX TestSet, RFC 2741
// §7.2.4.1): what set would answer now.
func (s *Server) testSet(user string, vbs []setVarbind) (status, index int64) {
	return s.setOrTest(context.Background(), user, vbs, true)
}

func (s *Server) setOrTest(ctx context.Context, user string, vbs []setVarbind, test bool) (status, index int64) {
	c := s.chal
	entry := oid(mibdef.ChallengeEntry)
	rows := map[uint32]*rowSet{}
	var order []uint32
	writable := []uint32{mibdef.ChallengeNonce, mibdef.ChallengeBank, mibdef.ChallengePcrSelect, mibdef.ChallengeCertName, mibdef.ChallengeRowStatus, mibdef.ChallengeSelection}
	for i, vb := range vbs {
		at := int64(i + 1)
		if !vb.oid.hasPrefix(entry) || len(vb.oid) == len(entry) || !slices.Contains(writable, vb.oid[len(entry)]) {
			return errNotWritable, at
		}
		if len(vb.oid) != len(entry)+2 || vb.oid[len(entry)+1] == 0 {
			return errNoCreation, at
		}
		col, idx := vb.oid[len(entry)], vb.oid[len(entry)+1]
		if st := checkValue(col, vb.tag, vb.val); st != 0 {
			return st, at
		}
		r := rows[idx]
		if r == nil {
			r = &rowSet{index: idx, cols: map[uint32]int{}}
			rows[idx] = r
			order = append(order, idx)
		}
		if _, dup := r.cols[col]; dup {
			return errInconsistentValue, at // one value per object
		}
		r.cols[col] = i
		if col == mibdef.ChallengeRowStatus {
			r.status, _ = parseInt(vb.val, "")
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.expire(now)
	var created []*challenge
	for _, idx := range order {
		r := rows[idx]
		old := c.rows[idx]
		at := func(col uint32) int64 { return int64(r.cols[col] + 1) }
		first := int64(len(vbs) + 1)
		for _, p := range r.cols {
			first = min(first, int64(p+1))
		}
		switch {
		case r.status == mibdef.RowDestroy:
			// Destroying a row that is not there leaves it not there.
			if len(r.cols) > 1 {
				return errInconsistentValue, first
			}
		case old != nil:
			// A row's columns do not change once it exists; active is
			// what it already is.
			if r.status != mibdef.RowActive || len(r.cols) > 1 {
				return errInconsistentValue, first
			}
		case r.status == 0:
			return errInconsistentName, first // only createAndGo makes a row
		case r.status != mibdef.RowCreateAndGo:
			return errInconsistentValue, at(mibdef.ChallengeRowStatus)
		default:
			ch, st, bad := s.newChallenge(idx, r, vbs, now)
			if st != 0 {
				return st, at(bad)
			}
			created = append(created, ch)
		}
	}
	if len(c.rows)+len(created) > c.maxRows {
		return errResourceUnavailable, int64(rows[created[0].index].cols[mibdef.ChallengeRowStatus] + 1)
	}
	if test {
		return 0, 0
	}
	for _, idx := range order {
		if rows[idx].status == mibdef.RowDestroy {
			delete(c.rows, idx)
		}
	}
	for _, ch := range created {
		c.rows[ch.index] = ch
		go s.quote(ctx, user, ch)
	}
	return 0, 0
}

// checkValue checks a value against its column's syntax.
func checkValue(col uint32, tag byte, v []byte) int64 {
	switch col {
	case mibdef.ChallengeNonce, mibdef.ChallengePcrSelect, mibdef.ChallengeCertName, mibdef.ChallengeSelection:
		if tag != tagOctets {
			return errWrongType
		}
	case mibdef.ChallengeBank:
		if tag != tagGauge32 {
			return errWrongType
		}
	case mibdef.ChallengeRowStatus:
		if tag != tagInteger {
			return errWrongType
		}
	}
	switch col {
	case mibdef.ChallengeNonce:
		if len(v) < 16 || len(v) > 64 {
			return errWrongLength
		}
	case mibdef.ChallengePcrSelect:
		if len(v) != 3 {
			return errWrongLength
		}
		if v[0]|v[1]|v[2] == 0 {
			return errWrongValue
		}
	case mibdef.ChallengeCertName:
		if len(v) > 255 {
			return errWrongLength
		}
		for _, r := range string(v) {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) {
				return errWrongValue // DisplayString: NVT ASCII
			}
		}
	case mibdef.ChallengeSelection:
		if len(v) > 64 {
			return errWrongLength
		}
		sel, err := quote.ParseSelection(v)
		if err != nil || len(sel) == 0 {
			return errWrongValue
		}
		seen := map[alg.ID]bool{}
		for _, b := range sel {
			if len(b.PCRs) == 0 || b.PCRs[len(b.PCRs)-1] > 23 || seen[b.Bank] {
				return errWrongValue // every bank once, with PCRs of 0-23
			}
			seen[b.Bank] = true
		}
	case mibdef.ChallengeBank:
		n, err := parseUint(v)
		if err != nil || n < 1 || n > 65535 {
			return errWrongValue
		}
	case mibdef.ChallengeRowStatus:
		n, err := parseInt(v, "")
		// notInService and notReady are not states this table has;
		// createAndWait is not supported (RFC 2579 lets an agent say
		// wrongValue).
		if err != nil || (n != mibdef.RowActive && n != mibdef.RowCreateAndGo && n != mibdef.RowDestroy) {
			return errWrongValue
		}
	}
	return 0
}

// newChallenge builds the row a createAndGo asks for, or says which
// column stands in the way and why.
func (s *Server) newChallenge(idx uint32, r *rowSet, vbs []setVarbind, now time.Time) (*challenge, int64, uint32) {
	ch := &challenge{index: idx, bank: alg.SHA256, sel: [3]byte{0xff, 0xff, 0xff}, created: now, state: mibdef.StatePending}
	p, ok := r.cols[mibdef.ChallengeNonce]
	if !ok {
		return nil, errInconsistentValue, mibdef.ChallengeRowStatus // cannot go active without it
	}
	ch.nonce = slices.Clone(vbs[p].val)
	if p, ok := r.cols[mibdef.ChallengeBank]; ok {
		n, _ := parseUint(vbs[p].val)
		ch.bank = alg.ID(n)
	}
	if !slices.Contains(s.cfg.Attester.Banks(), ch.bank) {
		return nil, errInconsistentValue, mibdef.ChallengeBank
	}
	if p, ok := r.cols[mibdef.ChallengePcrSelect]; ok {
		copy(ch.sel[:], vbs[p].val)
	}
	var pcrs []int
	for i := range 24 {
		if ch.sel[i/8]&(1<<(i%8)) != 0 {
			pcrs = append(pcrs, i)
		}
	}
	ch.selection = []pcr.Selection{{Bank: ch.bank, PCRs: pcrs}}
	if p, ok := r.cols[mibdef.ChallengeSelection]; ok {
		ch.selection, _ = quote.ParseSelection(vbs[p].val) // checked already
		for _, b := range ch.selection {
			if !slices.Contains(s.cfg.Attester.Banks(), b.Bank) {
				return nil, errInconsistentValue, mibdef.ChallengeSelection
			}
		}
	}
	aks := attestationKeys(s.cfg.Attester)
	if p, ok := r.cols[mibdef.ChallengeCertName]; ok && len(vbs[p].val) > 0 {
		ch.certName = string(vbs[p].val)
		if !slices.Contains(aks, ch.certName) {
			return nil, errInconsistentValue, mibdef.ChallengeCertName
		}
	} else if len(aks) == 0 {
		return nil, errInconsistentValue, mibdef.ChallengeRowStatus
	} else {
		ch.certName = aks[0]
	}
	return ch, 0, 0
}

// attestationKeys names the device's attestation key certificates (IAK
// and LAK), in the order the attester lists them.
func attestationKeys(a *attester.Attester) []string {
	var out []string
	for _, c := range a.Config().Certificates {
		if c.Type == attester.CertIAK || c.Type == attester.CertLAK {
			out = append(out, c.Name)
		}
	}
	return out
}

// quoteTimeout bounds one challenge's wait for the TPM (and its queue).
const quoteTimeout = 30 * time.Second

// quote runs a challenge's TPM2_Quote and records how it ended.
func (s *Server) quote(ctx context.Context, user string, ch *challenge) {
	ctx, cancel := context.WithTimeout(ctx, quoteTimeout)
	defer cancel()
	res, err := s.cfg.Attester.Attest(ctx, attester.Challenge{Nonce: ch.nonce, Selection: ch.selection,
		CertificateNames: []string{ch.certName}, Client: "snmp:" + user})
	s.chal.mu.Lock()
	defer s.chal.mu.Unlock()
	switch {
	case err != nil:
		ch.state, ch.err = mibdef.StateFailed, err.Error()
		s.cfg.Logger.Info("snmp: challenge failed", "index", ch.index, "user", user, "err", err)
	case len(res) != 1:
		ch.state, ch.err = mibdef.StateFailed, fmt.Sprintf("the TPM returned %d quotes for one key", len(res))
	default:
		ch.state, ch.attest, ch.sig = mibdef.StateReady, res[0].QuoteData, res[0].QuoteSignature
		// The logs a manager reads next must hold every entry the quote
		// covers: none from the cache of before it.
		s.mu.Lock()
		s.ev, s.snap = nil, nil
		s.mu.Unlock()
	}
}
