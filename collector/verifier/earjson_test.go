package verifier

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// earClaims writes the bytes the ear package writes, for every shape of
// result RIV signs: one TPM or several, with and without a nonce, policy
// id and attestation-set claims, any claim values.
func TestEARClaimsJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	claims := []ear.TrustClaim{0, -1, 1, 2, 3, 32, 33, 96, 97, 99}
	tiers := []ear.TrustTier{ear.TrustTierNone, ear.TrustTierAffirming, ear.TrustTierWarning, ear.TrustTierContraindicated}
	first, last := 3, 17
	for i := range 300 {
		ar := ear.NewAttestationResult("tpm0", "riv test", "openriv")
		for k := range rng.IntN(4) {
			name := []string{"lc1", "lc2", "device", "lc10"}[k]
			st := tiers[rng.IntN(len(tiers))]
			ar.Submods[name] = &ear.Appraisal{Status: &st, TrustVector: &ear.TrustVector{}}
		}
		if rng.IntN(2) == 0 {
			n := fmt.Sprintf("%064x", rng.Uint64())
			ar.Nonce = &n
		}
		for name, a := range ar.Submods {
			st := tiers[rng.IntN(len(tiers))]
			a.Status = &st
			v := a.TrustVector
			for _, c := range []*ear.TrustClaim{&v.InstanceIdentity, &v.Configuration, &v.Executables, &v.FileSystem, &v.Hardware, &v.RuntimeOpaque, &v.StorageOpaque, &v.SourcedData} {
				*c = claims[rng.IntN(len(claims))]
			}
			if rng.IntN(2) == 0 {
				p := "policy:" + name
				a.AppraisalPolicyID = &p
			}
			if rng.IntN(3) > 0 {
				annotate(a, &attestationSet{MPS: "riv-default", FMA: evidenceFormat, Evidence: "sha-256:00ff",
					LEM: []logEntries{{Log: "bios", First: &first, Last: &last, Count: 15, Digest: "ab<>&"}, {Log: "ima", Kept: true}},
					PCR: pcr.Values{alg.SHA256: {0: {0x00}, 10: {0xaa}}, alg.SHA384: {4: {0xbb}}}})
			}
		}
		want, err := ar.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := earClaims(ar)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkEARClaims(b *testing.B) {
	ar := ear.NewAttestationResult("tpm0", "riv test", "openriv")
	n := fmt.Sprintf("%064x", 1)
	ar.Nonce = &n
	first, last := 3, 117
	annotate(ar.Submods["tpm0"], &attestationSet{MPS: "riv-default", FMA: evidenceFormat, Evidence: "sha-256:00ff",
		LEM: []logEntries{{Log: "bios", Kept: true}, {Log: "ima", First: &first, Last: &last, Count: 100, Digest: "ab"}},
		PCR: pcr.Values{alg.SHA256: {0: {0x00}, 10: {0xaa}}}})
	b.Run("ear-package", func(b *testing.B) {
		for b.Loop() {
			ar.MarshalJSON()
		}
	})
	b.Run("earClaims", func(b *testing.B) {
		for b.Loop() {
			earClaims(ar)
		}
	})
}
