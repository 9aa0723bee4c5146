package quote

import (
	"encoding/binary"

	"github.com/openriv/riv/internal/wire"
)

// newReader reads big-endian TPM 2.0 structures (Part 1 §18.6).
func newReader(b []byte) *wire.Reader { return wire.New(b, binary.BigEndian, ErrMalformed) }

// stripTPM2B removes a leading TPM2B size when it equals the length of the
// rest and the rest starts like the structure (looksLike). Tools disagree on
// whether files hold TPM2B_ATTEST or TPMS_ATTEST, so both are accepted.
func stripTPM2B(b []byte, looksLike func([]byte) bool) []byte {
	if len(b) >= 2 && int(binary.BigEndian.Uint16(b)) == len(b)-2 && looksLike(b[2:]) && !looksLike(b) {
		return b[2:]
	}
	return b
}
