// Package softtpm is a TPM 2.0 in software, for the fleet simulator
// (riv-fleetsim) only: PCR banks, a clock and attestation keys held in
// process memory, with quotes encoded in the exact TPMS_ATTEST and
// TPMT_SIGNATURE structures of TPM 2.0 Part 2 and signed in software.
//
// It is not a TPM and protects nothing: its keys are ordinary memory, so
// a "quote" from it proves only that this process signed it. It exists so
// that one process can stand in for tens of thousands of routers when
// the collector is load-tested; every real TPM path (the in-process
// simulator, swtpm, a kernel device) stays in pkg/tpm and is tested there.
package softtpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
)

// numPCRs is the PCR count of a PC Client TPM.
const numPCRs = 24

// firmwareVersion is what its quotes report as TPM firmware.
const firmwareVersion = 0x0000_0001_0000_0000

// TPM is a software TPM. Its methods are safe for concurrent use.
type TPM struct {
	mu           sync.Mutex
	banks        []alg.ID
	pcrs         map[alg.ID]*[numPCRs][]byte
	resetCount   uint32
	restartCount uint32
	clockBase    uint64 // milliseconds of clock before the last reset
	started      time.Time
	keys         map[uint32]*ecdsa.PrivateKey
	next         uint32
	// now is the time source of the clock (tests replace it).
	now func() time.Time
}

// New returns a TPM with the given banks allocated (SHA-256 when none),
// freshly reset.
func New(banks ...alg.ID) (*TPM, error) {
	if len(banks) == 0 {
		banks = []alg.ID{alg.SHA256}
	}
	t := &TPM{banks: slices.Clone(banks), keys: map[uint32]*ecdsa.PrivateKey{}, next: 0x81000000, now: time.Now}
	for _, b := range banks {
		if b.Size() == 0 {
			return nil, fmt.Errorf("softtpm: bank %v is not a hash", b)
		}
	}
	t.reset()
	return t, nil
}

// reset sets every PCR to its initial value (TPM Reset).
func (t *TPM) reset() {
	t.pcrs = map[alg.ID]*[numPCRs][]byte{}
	for _, b := range t.banks {
		var p [numPCRs][]byte
		for i := range p {
			p[i] = pcr.Initial(b, i)
		}
		t.pcrs[b] = &p
	}
	t.started = t.now()
}

// Reset is a reboot: the PCRs return to their initial values and
// resetCount goes up; the clock goes on (it is kept across resets, as a
// TPM's is in NV).
func (t *TPM) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clockBase = t.clockLocked()
	t.resetCount++
	t.restartCount = 0
	t.reset()
}

func (t *TPM) clockLocked() uint64 {
	return t.clockBase + uint64(t.now().Sub(t.started).Milliseconds())
}

// CreateKey creates an ECC signing key (P-256 or P-384) after spec and
// returns it as pkg/tpm describes TPM keys, with a signer for an
// unrestricted one (restricted keys sign only quotes, as in a TPM).
func (t *TPM) CreateKey(spec tpm.KeySpec) (*tpm.Key, crypto.Signer, error) {
	var c elliptic.Curve
	switch spec.Alg {
	case tpm.ECCP256:
		c = elliptic.P256()
	case tpm.ECCP384:
		c = elliptic.P384()
	default:
		return nil, nil, fmt.Errorf("softtpm: %v keys are not simulated", spec.Alg)
	}
	priv, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	h := t.next
	t.next++
	t.keys[h] = priv
	t.mu.Unlock()
	k, err := tpm.SoftwareKey(spec, &priv.PublicKey, h)
	if err != nil {
		return nil, nil, err
	}
	if spec.Restricted {
		return k, nil, nil
	}
	return k, priv, nil
}

// Banks returns the allocated banks.
func (t *TPM) Banks(context.Context) ([]alg.ID, error) { return slices.Clone(t.banks), nil }

// ReadPCRs returns the selected PCRs.
func (t *TPM) ReadPCRs(_ context.Context, sel []pcr.Selection) (pcr.Values, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := pcr.Values{}
	for _, s := range sel {
		p := t.pcrs[s.Bank]
		if p == nil {
			return nil, fmt.Errorf("read PCRs: bank %v is not allocated", s.Bank)
		}
		for _, i := range s.PCRs {
			if i < 0 || i >= numPCRs {
				return nil, fmt.Errorf("read PCRs: no PCR %d", i)
			}
			out.Set(s.Bank, i, slices.Clone(p[i]))
		}
	}
	return out, nil
}

// Extend extends PCR idx with one digest per bank; a bank left out keeps
// its value, as with TPM2_PCR_Extend.
func (t *TPM) Extend(_ context.Context, idx int, digests map[alg.ID][]byte) error {
	if idx < 0 || idx >= numPCRs {
		return fmt.Errorf("extend PCR %d: no such PCR", idx)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for b, d := range digests {
		p := t.pcrs[b]
		if p == nil {
			return fmt.Errorf("extend PCR %d: bank %v is not allocated", idx, b)
		}
		if len(d) != b.Size() {
			return fmt.Errorf("extend PCR %d: %v digest of %d bytes", idx, b, len(d))
		}
		p[idx] = b.Sum(append(slices.Clone(p[idx]), d...))
	}
	return nil
}

// ReadClock returns the clock info.
func (t *TPM) ReadClock(context.Context) (quote.ClockInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.clockInfoLocked(), nil
}

func (t *TPM) clockInfoLocked() quote.ClockInfo {
	return quote.ClockInfo{Clock: t.clockLocked(), ResetCount: t.resetCount, RestartCount: t.restartCount, Safe: true}
}

// Quote signs the selected PCRs and nonce with the restricted key k, as
// TPM2_Quote with a Null inScheme does: TPMS_ATTEST (magic, TPM_ST_ATTEST_QUOTE,
// the key's Name as qualifiedSigner, nonce, clock, firmware version,
// TPMS_QUOTE_INFO with the PCR digest under the scheme's hash) and its
// TPMT_SIGNATURE.
func (t *TPM) Quote(_ context.Context, k *tpm.Key, nonce []byte, sel []pcr.Selection) (attest, sig []byte, err error) {
	if k == nil || k.Public == nil {
		return nil, nil, errors.New("quote: no key")
	}
	if len(nonce) > 64 {
		return nil, nil, errors.New("quote: qualifyingData longer than a digest")
	}
	t.mu.Lock()
	priv := t.keys[uint32(k.Handle)]
	if priv == nil {
		t.mu.Unlock()
		return nil, nil, fmt.Errorf("quote: no key at handle 0x%08x", uint32(k.Handle))
	}
	vals := pcr.Values{}
	for _, s := range sel {
		p := t.pcrs[s.Bank]
		if p == nil {
			t.mu.Unlock()
			return nil, nil, fmt.Errorf("quote: bank %v is not allocated", s.Bank)
		}
		for _, i := range s.PCRs {
			if i < 0 || i >= numPCRs {
				t.mu.Unlock()
				return nil, nil, fmt.Errorf("quote: no PCR %d", i)
			}
			vals.Set(s.Bank, i, p[i])
		}
	}
	ci := t.clockInfoLocked()
	t.mu.Unlock()

	h := k.Public.SchemeHash
	if h == 0 || h == alg.Null {
		h = k.Public.NameAlg
	}
	digest, err := quote.PCRDigest(h, sel, vals)
	if err != nil {
		return nil, nil, fmt.Errorf("quote: %w", err)
	}
	name := k.Public.Name()
	a := binary.BigEndian.AppendUint32(nil, quote.Magic)
	a = binary.BigEndian.AppendUint16(a, quote.TypeQuote)
	a = append(binary.BigEndian.AppendUint16(a, uint16(len(name))), name...)
	a = append(binary.BigEndian.AppendUint16(a, uint16(len(nonce))), nonce...)
	a = binary.BigEndian.AppendUint64(a, ci.Clock)
	a = binary.BigEndian.AppendUint32(a, ci.ResetCount)
	a = binary.BigEndian.AppendUint32(a, ci.RestartCount)
	a = append(a, 1) // safe
	a = binary.BigEndian.AppendUint64(a, firmwareVersion)
	a = quote.AppendSelection(a, sel)
	a = append(binary.BigEndian.AppendUint16(a, uint16(len(digest))), digest...)

	md := h.Sum(a)
	r, s, err := ecdsa.Sign(rand.Reader, priv, md)
	if err != nil {
		return nil, nil, fmt.Errorf("quote: %w", err)
	}
	size := (priv.Curve.Params().BitSize + 7) / 8
	return a, (&quote.Signature{Alg: alg.ECDSA, Hash: h, R: r, S: s}).Marshal(size), nil
}
