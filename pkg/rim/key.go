package rim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
)

// ParsePublicKey reads a verification key: PEM or DER SubjectPublicKeyInfo,
// a PEM or DER certificate, or a JWK (a single key or a {"keys": [...]} set,
// whose first key is used).
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		return k, nil
	}
	if c, err := x509.ParseCertificate(der); err == nil {
		return c.PublicKey, nil
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(b, &set) == nil && len(set.Keys) > 0 {
		return parseJWK(set.Keys[0])
	}
	return parseJWK(b)
}

type jwk struct {
	Kty, Crv, X, Y, N, E string
}

func parseJWK(b []byte) (crypto.PublicKey, error) {
	var k jwk
	if err := json.Unmarshal(b, &k); err != nil || k.Kty == "" {
		return nil, fmt.Errorf("%w: not a PEM/DER key or certificate, nor a JWK", ErrMalformed)
	}
	dec := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch k.Kty {
	case "EC":
		var c elliptic.Curve
		switch k.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: JWK curve %q", ErrMalformed, k.Crv)
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: JWK coordinates", ErrMalformed)
		}
		size := (c.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			return nil, fmt.Errorf("%w: JWK coordinates too long", ErrMalformed)
		}
		pt := make([]byte, 1+2*size)
		pt[0] = 4
		copy(pt[1+size-len(x):], x)
		copy(pt[1+2*size-len(y):], y)
		xi, yi := elliptic.Unmarshal(c, pt) //nolint:staticcheck // validates the point
		if xi == nil {
			return nil, fmt.Errorf("%w: JWK point not on %s", ErrMalformed, k.Crv)
		}
		return &ecdsa.PublicKey{Curve: c, X: xi, Y: yi}, nil
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err1 != nil || err2 != nil || len(e) > 4 {
			return nil, fmt.Errorf("%w: JWK RSA parameters", ErrMalformed)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "OKP":
		x, err := dec(k.X)
		if err != nil || k.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: JWK OKP key", ErrMalformed)
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("%w: JWK key type %q", ErrMalformed, k.Kty)
}
