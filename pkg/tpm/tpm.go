// Package tpm is RIV's only door to a TPM 2.0: the in-process simulator,
// swtpm (unix or TCP socket) or a kernel device (/dev/tpmrm0). It offers
// the operations an attester needs — PCR banks and reads, extend, quote,
// clock, key creation from TCG-conformant templates, TPM2_Certify, and a
// crypto.Signer backed by a TPM key — over go-tpm's direct API.
//
// A TPM runs one command at a time; TPM serializes callers, and a caller
// whose context ends while waiting gives up without sending anything.
package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// TPM is an open TPM. Its methods are safe for concurrent use.
type TPM struct {
	sem chan struct{}
	t   transport.TPMCloser
	sim *simulator.Simulator
	// dial, when set, opens the TPM for each operation (OpenShared); t is
	// then nil between operations.
	dial func() (transport.TPMCloser, error)
}

// Open opens a TPM by spec (see openTransport): "sim", "swtpm:PATH",
// "swtpm:HOST:PORT" or a device path.
func Open(ctx context.Context, spec string) (*TPM, error) {
	t, sim, err := openTransport(spec)
	if err != nil {
		return nil, err
	}
	tp := &TPM{sem: make(chan struct{}, 1), t: retrying{t}, sim: sim}
	if err := tp.startup(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return tp, nil
}

// startup sends TPM2_Startup(CLEAR), which a fresh swtpm may need;
// TPM_RC_INITIALIZE means it ran already (the firmware or kernel did).
func (tp *TPM) startup(ctx context.Context) error {
	return tp.do(ctx, func(t transport.TPM) error {
		_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
		if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
			return fmt.Errorf("startup: %w", err)
		}
		return nil
	})
}

// OpenShared opens a TPM that other programs use too — the kernel's IMA
// extends PCR 10 through /dev/tpmrm0, and swtpm serves one connection at
// a time — by holding it only for the duration of each operation: every
// call opens the device or socket, runs its commands and closes it. Keys
// must then be persistent (a resource manager flushes the transient
// objects of a closed connection). The in-process simulator cannot be
// shared.
func OpenShared(ctx context.Context, spec string) (*TPM, error) {
	if spec == "sim" || spec == "simulator" {
		return nil, errors.New("the in-process simulator cannot be shared with other programs")
	}
	tp := &TPM{sem: make(chan struct{}, 1), dial: func() (transport.TPMCloser, error) {
		t, _, err := openTransport(spec)
		if err != nil {
			return nil, err
		}
		return retrying{t}, nil
	}}
	if err := tp.startup(ctx); err != nil {
		return nil, err
	}
	return tp, nil
}

// Close releases the TPM.
func (tp *TPM) Close() error {
	if tp.dial != nil {
		return nil
	}
	return tp.t.Close()
}

// IsSimulator reports whether this is the in-process simulator.
func (tp *TPM) IsSimulator() bool { return tp.sim != nil }

type deadliner interface{ SetDeadline(time.Time) error }

// do runs fn with exclusive use of the TPM. It waits for its turn only as
// long as ctx allows, and applies ctx's deadline to socket transports.
func (tp *TPM) do(ctx context.Context, fn func(transport.TPM) error) error {
	select {
	case tp.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("tpm busy: %w", ctx.Err())
	}
	defer func() { <-tp.sem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	t := tp.t
	if tp.dial != nil {
		var err error
		if t, err = tp.dial(); err != nil {
			return err
		}
		defer t.Close()
	}
	if d, ok := t.(deadliner); ok {
		dl, _ := ctx.Deadline()
		d.SetDeadline(dl)
	}
	return fn(t)
}

// Reset simulates a reboot (TPM Reset): resetCount increments and PCRs
// return to their reset values. Only the in-process simulator supports it;
// for swtpm, use its control channel.
func (tp *TPM) Reset(ctx context.Context) error {
	if tp.sim == nil {
		return errors.New("reset: only the in-process simulator can be reset here")
	}
	return tp.do(ctx, func(transport.TPM) error { return tp.sim.Reset() })
}

// Shutdown sends TPM2_Shutdown(CLEAR), as an operating system does before
// power-off (Part 3 §9.4): the TPM saves its clock, so after the next
// TPM2_Startup its clock is safe. The TPM accepts no other command until
// it starts up again.
func (tp *TPM) Shutdown(ctx context.Context) error {
	return tp.do(ctx, func(t transport.TPM) error {
		if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(t); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	})
}

// ResetLockout is TPM2_DictionaryAttackLockReset with the lockout
// hierarchy's empty authorization, as a TPM leaves the factory: a TPM
// stopped without TPM2_Shutdown counts an authorization failure
// (Part 1 §19.8.6), and after a few such stops refuses its keys
// (TPM_RC_LOCKOUT). For the testbed's TPMs, which are killed as often as
// stopped; a device owner sets a lockout password.
func (tp *TPM) ResetLockout(ctx context.Context) error {
	return tp.do(ctx, func(t transport.TPM) error {
		// go-tpm has no command type for it: header, the lockout handle,
		// and a password session with an empty password.
		cmd := []byte{0x80, 0x02, 0, 0, 0, 27, 0, 0, 0x01, 0x39, 0x40, 0, 0, 0x0a,
			0, 0, 0, 9, 0x40, 0, 0, 0x09, 0, 0, 0, 0, 0}
		rsp, err := t.Send(cmd)
		if err != nil {
			return fmt.Errorf("dictionary attack lock reset: %w", err)
		}
		if len(rsp) < 10 {
			return errors.New("dictionary attack lock reset: short response")
		}
		if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
			return fmt.Errorf("dictionary attack lock reset: %w", rc)
		}
		return nil
	})
}

// Banks returns the allocated PCR banks (TPM2_GetCapability TPM_CAP_PCRS).
func (tp *TPM) Banks(ctx context.Context) ([]alg.ID, error) {
	var out []alg.ID
	err := tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
		if err != nil {
			return fmt.Errorf("get capability PCRs: %w", err)
		}
		sel, err := rsp.CapabilityData.Data.AssignedPCR()
		if err != nil {
			return fmt.Errorf("get capability PCRs: %w", err)
		}
		for _, s := range sel.PCRSelections {
			for _, b := range s.PCRSelect {
				if b != 0 {
					out = append(out, alg.ID(s.Hash))
					break
				}
			}
		}
		return nil
	})
	return out, err
}

func toTPMSelection(sel []pcr.Selection) tpm2.TPMLPCRSelection {
	var out tpm2.TPMLPCRSelection
	for _, s := range sel {
		m := s.Mask()
		out.PCRSelections = append(out.PCRSelections, tpm2.TPMSPCRSelection{
			Hash: tpm2.TPMAlgID(s.Bank), PCRSelect: []byte{byte(m), byte(m >> 8), byte(m >> 16)},
		})
	}
	return out
}

// ReadPCRs reads the selected PCRs. TPM2_PCR_Read returns at most eight
// digests per call, so it loops until every PCR is read; a bank the TPM has
// not allocated is an error naming it.
func (tp *TPM) ReadPCRs(ctx context.Context, sel []pcr.Selection) (pcr.Values, error) {
	out := pcr.Values{}
	err := tp.do(ctx, func(t transport.TPM) error {
		for _, s := range sel {
			left := s.Mask()
			for left != 0 {
				rsp, err := tpm2.PCRRead{PCRSelectionIn: toTPMSelection([]pcr.Selection{pcr.FromMask(s.Bank, left)})}.Execute(t)
				if err != nil {
					return fmt.Errorf("read %v PCRs: %w", s.Bank, err)
				}
				got := uint32(0)
				for _, rs := range rsp.PCRSelectionOut.PCRSelections {
					for i, b := range rs.PCRSelect {
						got |= uint32(b) << (8 * uint(i))
					}
				}
				if got == 0 {
					return fmt.Errorf("read PCRs: bank %v is not allocated", s.Bank)
				}
				done := pcr.FromMask(s.Bank, got)
				if len(done.PCRs) != len(rsp.PCRValues.Digests) {
					return fmt.Errorf("read PCRs: %d values for %d PCRs", len(rsp.PCRValues.Digests), len(done.PCRs))
				}
				for i, idx := range done.PCRs {
					out.Set(s.Bank, idx, rsp.PCRValues.Digests[i].Buffer)
				}
				left &^= got
			}
		}
		return nil
	})
	return out, err
}

// Extend extends PCR idx with one digest per bank (TPM2_PCR_Extend). The
// digests map must cover every allocated bank the caller wants to keep in
// step with its log.
func (tp *TPM) Extend(ctx context.Context, idx int, digests map[alg.ID][]byte) error {
	var vals tpm2.TPMLDigestValues
	for _, b := range sortedBanks(digests) {
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(b), Digest: digests[b]})
	}
	return tp.do(ctx, func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Auth: tpm2.PasswordAuth(nil)},
			Digests:   vals,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("extend PCR %d: %w", idx, err)
		}
		return nil
	})
}

func sortedBanks(m map[alg.ID][]byte) []alg.ID {
	v := pcr.Values{}
	for b := range m {
		v[b] = nil
	}
	return v.Banks()
}

// ReadClock returns the TPM's clock info (TPM2_ReadClock).
func (tp *TPM) ReadClock(ctx context.Context) (quote.ClockInfo, error) {
	var ci quote.ClockInfo
	err := tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.ReadClock{}.Execute(t)
		if err != nil {
			return fmt.Errorf("read clock: %w", err)
		}
		c := rsp.CurrentTime.ClockInfo
		ci = quote.ClockInfo{Clock: c.Clock, ResetCount: c.ResetCount, RestartCount: c.RestartCount, Safe: bool(c.Safe)}
		return nil
	})
	return ci, err
}

// Quote signs the selected PCRs and nonce with key (TPM2_Quote) and
// returns TPMS_ATTEST and TPMT_SIGNATURE exactly as the TPM produced them.
func (tp *TPM) Quote(ctx context.Context, key *Key, nonce []byte, sel []pcr.Selection) (attest, sig []byte, err error) {
	err = tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.Quote{
			SignHandle:     key.auth(),
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      toTPMSelection(sel),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("quote: %w", err)
		}
		attest = rsp.Quoted.Bytes()
		sig = tpm2.Marshal(rsp.Signature)
		return nil
	})
	return attest, sig, err
}

// Certify has signer attest to object's name (TPM2_Certify): the evidence
// that both keys live in the same TPM.
func (tp *TPM) Certify(ctx context.Context, object, signer *Key, qualifying []byte) (attest, sig []byte, err error) {
	err = tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.Certify{
			ObjectHandle:   object.auth(),
			SignHandle:     signer.auth(),
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("certify: %w", err)
		}
		attest = rsp.CertifyInfo.Bytes()
		sig = tpm2.Marshal(rsp.Signature)
		return nil
	})
	return attest, sig, err
}
