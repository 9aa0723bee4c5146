// Package quote parses and verifies TPM 2.0 attestation structures:
// TPMS_ATTEST, TPMT_SIGNATURE and TPMT_PUBLIC (TPM 2.0 Library Part 2), and
// checks a quote against a key, a nonce, a PCR selection and PCR values.
//
// It is pure: no TPM, no I/O. Parse functions return untrusted data; only
// what Verify returns has been checked.
package quote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/openriv/riv/internal/wire"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// Sentinel errors. Verification failures wrap one of these so callers can
// turn them into attestation claims with errors.Is.
var (
	ErrMalformed         = errors.New("malformed TPM structure")
	ErrBadMagic          = errors.New("TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
	ErrWrongType         = errors.New("wrong attestation type")
	ErrUnsupportedAlg    = errors.New("unsupported algorithm")
	ErrSignature         = errors.New("signature does not verify")
	ErrKeyMismatch       = errors.New("signature scheme does not fit the key")
	ErrNonceMismatch     = errors.New("nonce (extraData) mismatch")
	ErrSelectionMismatch = errors.New("quoted PCR selection differs from the requested one")
	ErrPCRDigestMismatch = errors.New("PCR digest mismatch")
	ErrMissingPCR        = errors.New("PCR value missing for a quoted PCR")
)

// Magic is TPM_GENERATED_VALUE (Part 2 §6.2): only the TPM signs structures
// starting with it, which is what makes a quote unforgeable by software that
// merely uses a restricted key.
const Magic uint32 = 0xff544347

// Attestation types, TPM_ST (Part 2 §6.9).
const (
	TypeNV           uint16 = 0x8014
	TypeCommandAudit uint16 = 0x8015
	TypeSessionAudit uint16 = 0x8016
	TypeCertify      uint16 = 0x8017
	TypeQuote        uint16 = 0x8018
	TypeTime         uint16 = 0x8019
	TypeCreation     uint16 = 0x801A
	TypeNVDigest     uint16 = 0x801C
)

// Bounds from Part 2 (TPMU_NAME, TPMU_HA, PCR_SELECT_MAX, HASH_COUNT), with
// headroom for future hashes; anything larger is malformed.
const (
	maxName    = 2 + 64
	maxDigest  = 64
	maxData    = 64 + 2 // TPM2B_DATA holds a TPMT_HA
	maxSelect  = 32     // PCR_SELECT_MAX for up to 256 PCRs
	maxBanks   = 16
	maxNVBytes = 2048
)

// ClockInfo is TPMS_CLOCK_INFO (Part 2 §10.11.1). ResetCount increments on
// every TPM Reset (a reboot); RestartCount on TPM Restart/Resume; the
// verifier uses them to tell a reboot from a replay.
type ClockInfo struct {
	Clock        uint64 `json:"clock"`
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
	Safe         bool   `json:"safe"`
}

// QuoteInfo is TPMS_QUOTE_INFO (Part 2 §10.12.4).
type QuoteInfo struct {
	Selection []pcr.Selection
	PCRDigest []byte
}

// CertifyInfo is TPMS_CERTIFY_INFO (Part 2 §10.12.3).
type CertifyInfo struct {
	Name          []byte
	QualifiedName []byte
}

// CreationInfo is TPMS_CREATION_INFO (Part 2 §10.12.7).
type CreationInfo struct {
	ObjectName   []byte
	CreationHash []byte
}

// TimeInfo is TPMS_TIME_ATTEST_INFO (Part 2 §10.12.6).
type TimeInfo struct {
	Time            uint64
	ClockInfo       ClockInfo
	FirmwareVersion uint64
}

// NVInfo is TPMS_NV_CERTIFY_INFO (Part 2 §10.12.8).
type NVInfo struct {
	IndexName  []byte
	Offset     uint16
	NVContents []byte
}

// Attest is a parsed TPMS_ATTEST (Part 2 §10.12.12). Every field is
// untrusted until Verify has checked the signature over Raw.
type Attest struct {
	Magic           uint32
	Type            uint16
	QualifiedSigner []byte
	ExtraData       []byte
	ClockInfo       ClockInfo
	FirmwareVersion uint64

	// Exactly one of these is set, according to Type.
	Quote    *QuoteInfo
	Certify  *CertifyInfo
	Creation *CreationInfo
	Time     *TimeInfo
	NV       *NVInfo

	// Raw is the TPMS_ATTEST bytes the signature covers (without any TPM2B
	// size prefix).
	Raw []byte
}

func looksLikeAttest(b []byte) bool {
	return len(b) >= 6 && binary.BigEndian.Uint32(b) == Magic
}

// ParseAttest parses a TPMS_ATTEST, or a TPM2B_ATTEST (the same with a u16
// size in front). Unknown types, trailing bytes and over-long fields are
// errors wrapping ErrMalformed; a wrong magic wraps ErrBadMagic.
func ParseAttest(b []byte) (*Attest, error) {
	b = stripTPM2B(b, looksLikeAttest)
	r := newReader(b)
	a := &Attest{Raw: b}
	a.Magic = r.U32("magic")
	if r.Err == nil && a.Magic != Magic {
		return nil, fmt.Errorf("%w: got 0x%08x", ErrBadMagic, a.Magic)
	}
	a.Type = r.U16("type")
	a.QualifiedSigner = r.Sized(maxName, "qualifiedSigner")
	a.ExtraData = r.Sized(maxData, "extraData")
	a.ClockInfo = readClock(r)
	a.FirmwareVersion = r.U64("firmwareVersion")
	if r.Err != nil {
		return nil, r.Err
	}
	switch a.Type {
	case TypeQuote:
		sel := readSelection(r)
		a.Quote = &QuoteInfo{Selection: sel, PCRDigest: r.Sized(maxDigest, "pcrDigest")}
	case TypeCertify:
		a.Certify = &CertifyInfo{Name: r.Sized(maxName, "name"), QualifiedName: r.Sized(maxName, "qualifiedName")}
	case TypeCreation:
		a.Creation = &CreationInfo{ObjectName: r.Sized(maxName, "objectName"), CreationHash: r.Sized(maxDigest, "creationHash")}
	case TypeTime:
		a.Time = &TimeInfo{Time: r.U64("time"), ClockInfo: readClock(r), FirmwareVersion: r.U64("time firmwareVersion")}
	case TypeNV:
		a.NV = &NVInfo{IndexName: r.Sized(maxName, "indexName"), Offset: r.U16("offset"), NVContents: r.Sized(maxNVBytes, "nvContents")}
	default:
		return nil, fmt.Errorf("%w: attestation type 0x%04x not supported", ErrMalformed, a.Type)
	}
	if err := r.Done("TPMS_ATTEST"); err != nil {
		return nil, err
	}
	return a, nil
}

func readClock(r *wire.Reader) ClockInfo {
	c := ClockInfo{Clock: r.U64("clock"), ResetCount: r.U32("resetCount"), RestartCount: r.U32("restartCount")}
	switch s := r.U8("safe"); s {
	case 0, 1:
		c.Safe = s == 1
	default:
		r.Fail(fmt.Sprintf("safe is %d, want 0 or 1", s))
	}
	return c
}

// readSelection reads a TPML_PCR_SELECTION (Part 2 §10.9.7).
func readSelection(r *wire.Reader) []pcr.Selection {
	n := r.U32("pcrSelect count")
	if r.Err != nil {
		return nil
	}
	if n > maxBanks {
		r.Fail(fmt.Sprintf("pcrSelect count %d exceeds %d", n, maxBanks))
		return nil
	}
	out := make([]pcr.Selection, 0, n)
	for i := uint32(0); i < n; i++ {
		bank := alg.ID(r.U16("pcrSelect hash"))
		sz := int(r.U8("sizeofSelect"))
		if r.Err == nil && sz > maxSelect {
			r.Fail(fmt.Sprintf("sizeofSelect %d exceeds %d", sz, maxSelect))
		}
		bits := r.Bytes(sz, "pcrSelect")
		if r.Err != nil {
			return nil
		}
		s := pcr.Selection{Bank: bank}
		n := 0
		for _, v := range bits {
			n += popcount(v)
		}
		s.PCRs = make([]int, 0, n)
		for byteIdx, v := range bits {
			for bit := 0; bit < 8; bit++ {
				if v&(1<<uint(bit)) != 0 {
					s.PCRs = append(s.PCRs, byteIdx*8+bit)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// ParseSelection reads a whole TPML_PCR_SELECTION, as AppendSelection
// writes it (any bitmap size up to the TPM's).
func ParseSelection(b []byte) ([]pcr.Selection, error) {
	r := newReader(b)
	sel := readSelection(r)
	if err := r.Done("TPML_PCR_SELECTION"); err != nil {
		return nil, err
	}
	return sel, nil
}

// AppendSelection appends the TPML_PCR_SELECTION encoding of sel, with a
// 3-byte bitmap per bank (24 PCRs, the PC Client minimum).
func AppendSelection(b []byte, sel []pcr.Selection) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(sel)))
	for _, s := range sel {
		m := s.Mask()
		b = binary.BigEndian.AppendUint16(b, uint16(s.Bank))
		b = append(b, 3, byte(m), byte(m>>8), byte(m>>16))
	}
	return b
}

func popcount(v byte) int {
	n := 0
	for ; v != 0; v &= v - 1 {
		n++
	}
	return n
}
