package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
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
}
