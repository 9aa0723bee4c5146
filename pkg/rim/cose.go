package rim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	cose "github.com/veraison/go-cose"
)

// Verification failures (exit 1 in rivctl): bad signature, chain or
// profile. Anything else is unreadable input.
var (
	ErrSignature = errors.New("signature does not verify")
	ErrChain     = errors.New("signer certificate not trusted")
	ErrProfile   = errors.New("RIM profile violated")
)

// IsVerificationError reports whether err is a failed check rather than
// unreadable input.
func IsVerificationError(err error) bool {
	return errors.Is(err, ErrSignature) || errors.Is(err, ErrChain) || errors.Is(err, ErrProfile)
}

// Signer signs RIMs: a key and its certificate chain, leaf first (carried
// in the x5chain header so verifiers need only the vendor's root).
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// algFor picks the COSE algorithm for a key: ES256 for P-256, ES384 for
// P-384, ES512 for P-521, PS256 for RSA, EdDSA for Ed25519.
func algFor(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		case elliptic.P521():
			return cose.AlgorithmES512, nil
		}
	case *rsa.PublicKey:
		return cose.AlgorithmPS256, nil
	case ed25519.PublicKey:
		return cose.AlgorithmEdDSA, nil
	}
	return 0, fmt.Errorf("no COSE algorithm for a %T key", pub)
}

// keyFits reports whether alg can be a signature by pub: ES256 needs a
// P-256 key, and so on. COSE lets the header name the algorithm; a
// verifier that let the key decide could be fooled into accepting a
// signature the signer never claimed.
func keyFits(a cose.Algorithm, pub crypto.PublicKey) error {
	want, err := algFor(pub)
	if err != nil {
		return err
	}
	if _, isRSA := pub.(*rsa.PublicKey); isRSA && (a == cose.AlgorithmPS256 || a == cose.AlgorithmPS384 || a == cose.AlgorithmPS512) {
		return nil
	}
	if a != want {
		return fmt.Errorf("protected header says %v but the signing key is %s (%v)", a, keyDesc(pub), want)
	}
	return nil
}

func keyDesc(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// SignCOSE wraps payload in a tagged COSE_Sign1 with alg, content type and
// x5chain in the protected header, plus any extra protected headers.
func SignCOSE(payload []byte, contentType string, s Signer, extra map[any]any) ([]byte, error) {
	a, err := algFor(s.Key.Public())
	if err != nil {
		return nil, err
	}
	cs, err := cose.NewSigner(a, s.Key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Payload = payload
	msg.Headers.Protected.SetAlgorithm(a)
	msg.Headers.Protected[cose.HeaderLabelContentType] = contentType
	if len(s.Chain) > 0 {
		var chain [][]byte
		for _, c := range s.Chain {
			chain = append(chain, c.Raw)
		}
		if len(chain) == 1 {
			msg.Headers.Protected[cose.HeaderLabelX5Chain] = chain[0]
		} else {
			msg.Headers.Protected[cose.HeaderLabelX5Chain] = chain
		}
	}
	for k, v := range extra {
		msg.Headers.Protected[k] = v
	}
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return msg.MarshalCBOR()
}

// VerifyOptions says what a RIM signature must chain to.
type VerifyOptions struct {
	// Roots are the vendor trust anchors for the x5chain; or Key, a bare
	// public key (then no chain is checked).
	Roots *x509.CertPool
	Key   crypto.PublicKey
	// ExternalAAD is the COSE external additional authenticated data.
	ExternalAAD []byte
	Now         time.Time
}

// Signed is a COSE_Sign1 whose signature verified.
type Signed struct {
	Payload     []byte
	ContentType string
	Alg         cose.Algorithm
	// Signer is the leaf of the x5chain (nil when verified with a bare key).
	Signer    *x509.Certificate
	Protected cose.ProtectedHeader
}

// VerifyCOSE parses a tagged or untagged COSE_Sign1 and verifies it.
func VerifyCOSE(raw []byte, o VerifyOptions) (*Signed, error) {
	msg, err := DecodeCOSE(raw)
	if err != nil {
		return nil, err
	}
	a, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		// RFC 9052 §3.1 allows alg unprotected; keyFits below still binds
		// it to the key, so it cannot be swapped for a weaker one.
		var err2 error
		if a, err2 = cose.ProtectedHeader(msg.Headers.Unprotected).Algorithm(); err2 != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
		}
	}
	out := &Signed{Payload: msg.Payload, Alg: a, Protected: msg.Headers.Protected}
	if ct, ok := msg.Headers.Protected[cose.HeaderLabelContentType].(string); ok {
		out.ContentType = ct
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	pub := o.Key
	if pub == nil {
		chain, err := x5chain(msg.Headers)
		if err != nil {
			return nil, err
		}
		if len(chain) == 0 {
			return nil, fmt.Errorf("%w: no x5chain header and no key given", ErrChain)
		}
		if o.Roots == nil {
			return nil, fmt.Errorf("%w: no trust anchors given", ErrChain)
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: o.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrChain, chain[0].Subject, err)
		}
		out.Signer = chain[0]
		pub = chain[0].PublicKey
	}
	if err := keyFits(a, pub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	v, err := cose.NewVerifier(a, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	tbs, err := toBeSigned(msg, o.ExternalAAD)
	if err != nil {
		return nil, err
	}
	if err := v.Verify(tbs, msg.Signature); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return out, nil
}

// toBeSigned builds the Sig_structure of a COSE_Sign1 (RFC 9052 §4.4):
// ["Signature1", protected as sent, external_aad, payload]. Built here
// rather than by go-cose so that a message whose alg sits in the
// unprotected header still verifies.
func toBeSigned(msg *cose.Sign1Message, aad []byte) ([]byte, error) {
	prot := msg.Headers.RawProtected
	if prot == nil {
		var err error
		if prot, err = msg.Headers.MarshalProtected(); err != nil {
			return nil, fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
		}
	}
	var p []byte
	if err := decMode.Unmarshal(prot, &p); err != nil {
		return nil, fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
	}
	// An empty protected map is signed as a zero-length string (RFC 9052
	// §3: h'a0' and h'' both mean "no protected headers"; the COSE WG
	// examples sign the latter).
	if len(p) == 1 && p[0] == 0xa0 {
		p = []byte{}
	}
	if aad == nil {
		aad = []byte{}
	}
	if msg.Payload == nil {
		return nil, fmt.Errorf("%w: detached payload", ErrMalformed)
	}
	return encMode.Marshal([]any{"Signature1", p, aad, msg.Payload})
}

// DecodeCOSE parses a tagged or untagged COSE_Sign1 without verifying it.
func DecodeCOSE(raw []byte) (*cose.Sign1Message, error) {
	msg := cose.NewSign1Message()
	err := guard(func() error { return msg.UnmarshalCBOR(raw) })
	if err == nil {
		return msg, nil
	}
	var u cose.UntaggedSign1Message
	if guard(func() error { return u.UnmarshalCBOR(raw) }) == nil {
		return (*cose.Sign1Message)(&u), nil
	}
	return nil, fmt.Errorf("%w: not a COSE_Sign1: %v", ErrMalformed, err)
}

// x5chain reads the x5chain header (protected or unprotected): one
// certificate as a byte string, or an array of them, leaf first.
func x5chain(h cose.Headers) ([]*x509.Certificate, error) {
	v, ok := h.Protected[cose.HeaderLabelX5Chain]
	if !ok {
		v, ok = h.Unprotected[cose.HeaderLabelX5Chain]
	}
	if !ok {
		return nil, nil
	}
	var ders [][]byte
	switch x := v.(type) {
	case []byte:
		ders = [][]byte{x}
	case []any:
		for _, e := range x {
			b, ok := e.([]byte)
			if !ok {
				return nil, fmt.Errorf("%w: x5chain element is %T", ErrMalformed, e)
			}
			ders = append(ders, b)
		}
	default:
		return nil, fmt.Errorf("%w: x5chain is %T", ErrMalformed, v)
	}
	var out []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: x5chain certificate: %v", ErrMalformed, err)
		}
		out = append(out, c)
	}
	return out, nil
}
