// Package alg names the TPM 2.0 algorithm identifiers (TCG Algorithm Registry,
// TPM_ALG_ID) that evidence carries, and maps the hash algorithms among them to
// Go hash implementations. It is shared by the quote, event-log and TPM
// packages so that "sha256" means one thing everywhere.
package alg

import (
	"crypto"
	_ "crypto/sha1" // register hashes used by TPM PCR banks
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"hash"
	"strings"
)

// ID is a TPM_ALG_ID (TCG Algorithm Registry, Table 3).
type ID uint16

// TPM_ALG_ID values used by RIV.
const (
	Error     ID = 0x0000
	RSA       ID = 0x0001
	SHA1      ID = 0x0004
	HMAC      ID = 0x0005
	AES       ID = 0x0006
	KeyedHash ID = 0x0008
	XOR       ID = 0x000A
	SHA256    ID = 0x000B
	SHA384    ID = 0x000C
	SHA512    ID = 0x000D
	Null      ID = 0x0010
	SM3_256   ID = 0x0012
	SM4       ID = 0x0013
	RSASSA    ID = 0x0014
	RSAES     ID = 0x0015
	RSAPSS    ID = 0x0016
	OAEP      ID = 0x0017
	ECDSA     ID = 0x0018
	ECDH      ID = 0x0019
	ECDAA     ID = 0x001A
	SM2       ID = 0x001B
	ECSchnorr ID = 0x001C
	ECMQV     ID = 0x001D
	KDF1SP800 ID = 0x0020
	KDF2      ID = 0x0021
	KDF1SP108 ID = 0x0022
	ECC       ID = 0x0023
	SymCipher ID = 0x0025
	CTR       ID = 0x0040
	OFB       ID = 0x0041
	CBC       ID = 0x0042
	CFB       ID = 0x0043
	ECB       ID = 0x0044
)

var names = map[ID]string{
	RSA: "rsa", SHA1: "sha1", HMAC: "hmac", AES: "aes", KeyedHash: "keyedhash",
	XOR: "xor", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512", Null: "null",
	SM3_256: "sm3_256", SM4: "sm4", RSASSA: "rsassa", RSAES: "rsaes", RSAPSS: "rsapss",
	OAEP: "oaep", ECDSA: "ecdsa", ECDH: "ecdh", ECDAA: "ecdaa", SM2: "sm2",
	ECSchnorr: "ecschnorr", ECMQV: "ecmqv", ECC: "ecc", SymCipher: "symcipher",
	CTR: "ctr", OFB: "ofb", CBC: "cbc", CFB: "cfb", ECB: "ecb",
}

// String returns the lower-case registry name ("sha256"), the form used for
// PCR bank names in RIV's JSON, or "alg(0xNNNN)" for an unknown value.
func (a ID) String() string {
	if n, ok := names[a]; ok {
		return n
	}
	return fmt.Sprintf("alg(0x%04x)", uint16(a))
}

// ErrUnknown is returned for an algorithm name or ID RIV does not know.
var ErrUnknown = fmt.Errorf("unknown algorithm")

// ParseHash maps a bank name ("sha256", "SHA-256", "sm3") to its ID.
func ParseHash(s string) (ID, error) {
	n := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	switch n {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	case "sha384":
		return SHA384, nil
	case "sha512":
		return SHA512, nil
	case "sm3", "sm3_256", "sm3256":
		return SM3_256, nil
	}
	return 0, fmt.Errorf("%w: hash %q", ErrUnknown, s)
}

// IsHash reports whether a is a hash algorithm that RIV can compute.
func (a ID) IsHash() bool { return a.Size() != 0 }

// Size returns the digest size of a hash algorithm, or 0 if a is not one.
func (a ID) Size() int {
	switch a {
	case SHA1:
		return 20
	case SHA256, SM3_256:
		return 32
	case SHA384:
		return 48
	case SHA512:
		return 64
	}
	return 0
}

// CryptoHash returns the crypto.Hash for a, and false for SM3 (which Go's
// standard library does not have) or a non-hash.
func (a ID) CryptoHash() (crypto.Hash, bool) {
	switch a {
	case SHA1:
		return crypto.SHA1, true
	case SHA256:
		return crypto.SHA256, true
	case SHA384:
		return crypto.SHA384, true
	case SHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// New returns a new hash.Hash for a. It returns an error for a non-hash.
func (a ID) New() (hash.Hash, error) {
	if a == SM3_256 {
		return newSM3(), nil
	}
	h, ok := a.CryptoHash()
	if !ok {
		return nil, fmt.Errorf("%w: %v is not a hash", ErrUnknown, a)
	}
	return h.New(), nil
}

// Sum hashes data with a. It panics only if a is not a hash; callers check
// IsHash first (all IDs that come from untrusted input are checked on parse).
func (a ID) Sum(data ...[]byte) []byte {
	h, err := a.New()
	if err != nil {
		panic(err)
	}
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// HashByCrypto maps a crypto.Hash back to its TPM ID.
func HashByCrypto(h crypto.Hash) (ID, bool) {
	switch h {
	case crypto.SHA1:
		return SHA1, true
	case crypto.SHA256:
		return SHA256, true
	case crypto.SHA384:
		return SHA384, true
	case crypto.SHA512:
		return SHA512, true
	}
	return 0, false
}
