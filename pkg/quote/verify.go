package quote

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// Options says what a quote must prove.
type Options struct {
	// Nonce must equal extraData exactly. An empty nonce only matches an
	// empty extraData: RIV never skips the freshness check.
	Nonce []byte
	// Selection is what the verifier asked for. A TPM silently drops banks
	// it has not allocated, so a quote that covers less is rejected with
	// ErrSelectionMismatch naming what is missing. Nil accepts the quoted
	// selection as it is.
	Selection []pcr.Selection
	// PCRs, when set, must hold a value for every quoted PCR; their digest,
	// computed with the signing scheme's hash, must equal pcrDigest.
	PCRs pcr.Values
}

// Result is what Verify checked. All of it is trusted once err is nil.
type Result struct {
	Attest    *Attest
	Signature *Signature
	Selection []pcr.Selection
	ClockInfo ClockInfo
}

// Verify parses attest (TPMS_ATTEST) and sig (TPMT_SIGNATURE) and checks, in
// this order: magic and type, signature with pub, nonce, PCR selection and
// PCR digest. Every failure wraps one of the package's sentinel errors.
func Verify(pub crypto.PublicKey, attest, sig []byte, opts Options) (*Result, error) {
	a, err := ParseAttest(attest)
	if err != nil {
		return nil, fmt.Errorf("parse quote: %w", err)
	}
	s, err := ParseSignature(sig)
	if err != nil {
		return nil, fmt.Errorf("parse signature: %w", err)
	}
	return VerifyParsed(pub, a, s, opts)
}

// VerifyParsed is Verify for structures parsed already.
func VerifyParsed(pub crypto.PublicKey, a *Attest, s *Signature, opts Options) (*Result, error) {
	if a.Type != TypeQuote {
		return nil, fmt.Errorf("%w: 0x%04x, want TPM_ST_ATTEST_QUOTE", ErrWrongType, a.Type)
	}
	if err := VerifySignature(pub, a.Raw, s); err != nil {
		return nil, err
	}
	if !bytes.Equal(a.ExtraData, opts.Nonce) {
		return nil, fmt.Errorf("%w: quote has %x, want %x", ErrNonceMismatch, a.ExtraData, opts.Nonce)
	}
	sel := a.Quote.Selection
	if opts.Selection != nil && !pcr.EqualSelections(sel, opts.Selection) {
		if miss := pcr.MissingFrom(sel, opts.Selection); len(miss) > 0 {
			return nil, fmt.Errorf("%w: quote lacks %v (bank not allocated?)", ErrSelectionMismatch, miss)
		}
		return nil, fmt.Errorf("%w: quoted %v, requested %v", ErrSelectionMismatch, sel, opts.Selection)
	}
	if opts.PCRs != nil {
		d, err := PCRDigest(s.Hash, sel, opts.PCRs)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(d, a.Quote.PCRDigest) {
			return nil, fmt.Errorf("%w: computed %x, quoted %x", ErrPCRDigestMismatch, d, a.Quote.PCRDigest)
		}
	}
	return &Result{Attest: a, Signature: s, Selection: sel, ClockInfo: a.ClockInfo}, nil
}

// PCRDigest computes the quote's pcrDigest: H(PCR values concatenated in
// selection order) with h, the signing scheme's hash (Part 3 §18.4).
func PCRDigest(h alg.ID, sel []pcr.Selection, vals pcr.Values) ([]byte, error) {
	for _, s := range sel {
		for _, i := range s.PCRs {
			if vals.Get(s.Bank, i) == nil {
				return nil, fmt.Errorf("%w: %v PCR %d", ErrMissingPCR, s.Bank, i)
			}
		}
	}
	ch, ok := h.CryptoHash()
	if !ok {
		hh, err := h.New()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedAlg, h)
		}
		for _, s := range sel {
			for _, i := range s.PCRs {
				hh.Write(vals.Get(s.Bank, i))
			}
		}
		return hh.Sum(nil), nil
	}
	// Concatenate into a stack buffer (24 PCRs of 64 bytes in 4 banks fit)
	// and hash once, without the allocations of a hash.Hash.
	var stack [24 * 64 * 4]byte
	cat := stack[:0]
	for _, s := range sel {
		for _, i := range s.PCRs {
			cat = append(cat, vals.Get(s.Bank, i)...)
		}
	}
	var buf [64]byte
	return append([]byte(nil), digestInto(&buf, ch, cat)...), nil
}

// IsEvidenceError reports whether err is a verification failure (bad
// evidence) rather than unusable input to the verifier itself.
func IsEvidenceError(err error) bool {
	for _, e := range []error{ErrSignature, ErrNonceMismatch, ErrSelectionMismatch, ErrPCRDigestMismatch, ErrMissingPCR, ErrWrongType, ErrBadMagic, ErrKeyMismatch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
