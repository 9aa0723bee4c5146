package verifier

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/veraison/ear"
)

func claims(t *testing.T, tok []byte) map[string]any {
	t.Helper()
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %s", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEARProfiles(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := &Result{Device: "d"}
	r.Vector.InstanceIdentity = ear.TrustworthyInstanceClaim
	r.Vector.Executables = ear.ContraindicatedRuntimeClaim

	v := New(Policy{Name: "p"}, key)
	res, err := v.finish(r, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != ear.TrustTierContraindicated {
		t.Errorf("status %v", res.Status)
	}
	// The veraison profile verifies with veraison/ear itself.
	var ar ear.AttestationResult
	if err := ar.Verify(res.EAR, jwa.ES256(), &key.PublicKey); err != nil {
		t.Fatalf("ear.Verify = %v", err)
	}
	sub := claims(t, res.EAR)["submods"].(map[string]any)["tpm0"].(map[string]any)
	if _, ok := sub["ear.status"]; !ok {
		t.Errorf("veraison profile claims: %v", sub)
	}

	v.ClaimProfile = "draft-03"
	res, err = v.finish(&Result{Device: "d", Vector: r.Vector}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub = claims(t, res.EAR)["submods"].(map[string]any)["tpm0"].(map[string]any)
	if _, ok := sub["ear_status"]; !ok {
		t.Errorf("draft-03 profile claims: %v", sub)
	}
	if tv, ok := sub["ear_trustworthiness_vector"].(map[string]any); !ok || tv["executables"] == nil {
		t.Errorf("draft-03 vector: %v", sub)
	}
	if _, err := jws.Verify(res.EAR, jws.WithKey(jwa.ES256(), &key.PublicKey)); err != nil {
		t.Errorf("draft-03 token does not verify: %v", err)
	}
}

// The collector builds its JWS itself; tokens must verify with
// veraison/ear for both curves, carry the nonce, and fail when altered.
func TestEARSignatures(t *testing.T) {
	for _, tc := range []struct {
		curve elliptic.Curve
		alg   jwa.SignatureAlgorithm
	}{{elliptic.P256(), jwa.ES256()}, {elliptic.P384(), jwa.ES384()}} {
		key, _ := ecdsa.GenerateKey(tc.curve, rand.Reader)
		nonce := make([]byte, 32)
		rand.Read(nonce)
		res, err := New(Policy{Name: "p"}, key).finish(&Result{Device: "d"}, nonce)
		if err != nil {
			t.Fatal(err)
		}
		var ar ear.AttestationResult
		if err := ar.Verify(res.EAR, tc.alg, &key.PublicKey); err != nil {
			t.Fatalf("%v: ear.Verify = %v", tc.alg, err)
		}
		if ar.Nonce == nil || *ar.Nonce != fmt.Sprintf("%x", nonce) {
			t.Errorf("%v: nonce %v", tc.alg, ar.Nonce)
		}
		bad := bytes.Clone(res.EAR)
		bad[len(bad)-5] ^= 'A' ^ 'B'
		if bad[len(bad)-5] == res.EAR[len(res.EAR)-5] {
			bad[len(bad)-5] = 'C'
		}
		if err := ar.Verify(bad, tc.alg, &key.PublicKey); err == nil {
			t.Errorf("%v: altered signature verifies", tc.alg)
		}
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := New(Policy{Name: "p"}, rsaKey).finish(&Result{Device: "d"}, nil); err == nil || !strings.Contains(err.Error(), "want ECDSA") {
		t.Errorf("RSA signing key: err = %v", err)
	}
}
