package verifier

import (
	"encoding/json"

	"github.com/veraison/ear"
)

// The EAR's claims, encoded without the ear package's reflection (which
// builds a map of every struct, a tenth of a poll's CPU in the service):
// the same claims in the same order, so the bytes are the same as
// ear.AttestationResult.MarshalJSON's (TestEARClaimsJSON holds them to
// it). Map keys sort in encoding/json as they do in the map it builds.

type earJSON struct {
	VerifierID *ear.VerifierIdentity  `json:"ear.verifier-id"`
	Nonce      *string                `json:"eat_nonce,omitempty"`
	Profile    *string                `json:"eat_profile"`
	IssuedAt   *int64                 `json:"iat"`
	Submods    map[string]*submodJSON `json:"submods"`
}

type submodJSON struct {
	PolicyID     *string         `json:"ear.appraisal-policy-id,omitempty"`
	Status       *ear.TrustTier  `json:"ear.status"`
	Vector       *vectorJSON     `json:"ear.trustworthiness-vector,omitempty"`
	Annotated    *map[string]any `json:"ear.veraison.annotated-evidence,omitempty"`
	KeyAttest    *map[string]any `json:"ear.veraison.key-attestation,omitempty"`
	PolicyClaims *map[string]any `json:"ear.veraison.policy-claims,omitempty"`
}

// vectorJSON is a trust vector with every claim, zero ones too, in name
// order (as ear.TrustVector.AsMap gives them).
type vectorJSON struct {
	Configuration    ear.TrustClaim `json:"configuration"`
	Executables      ear.TrustClaim `json:"executables"`
	FileSystem       ear.TrustClaim `json:"file-system"`
	Hardware         ear.TrustClaim `json:"hardware"`
	InstanceIdentity ear.TrustClaim `json:"instance-identity"`
	RuntimeOpaque    ear.TrustClaim `json:"runtime-opaque"`
	SourcedData      ear.TrustClaim `json:"sourced-data"`
	StorageOpaque    ear.TrustClaim `json:"storage-opaque"`
}

// earClaims encodes ar's claims. What RIV never sets (raw evidence, TEE
// info, a submod without a status) goes through the ear package.
func earClaims(ar *ear.AttestationResult) ([]byte, error) {
	if ar.RawEvidence != nil || ar.VeraisonTeeInfo != nil || ar.Profile == nil || ar.IssuedAt == nil || ar.VerifierID == nil || len(ar.Submods) == 0 ||
		(ar.Nonce != nil && (len(*ar.Nonce) < 8 || len(*ar.Nonce) > 88)) {
		return ar.MarshalJSON()
	}
	out := earJSON{VerifierID: ar.VerifierID, Nonce: ar.Nonce, Profile: ar.Profile, IssuedAt: ar.IssuedAt, Submods: make(map[string]*submodJSON, len(ar.Submods))}
	for name, a := range ar.Submods {
		if a == nil || a.Status == nil {
			return ar.MarshalJSON()
		}
		s := &submodJSON{PolicyID: a.AppraisalPolicyID, Status: a.Status, Annotated: a.VeraisonAnnotatedEvidence, KeyAttest: a.VeraisonKeyAttestation, PolicyClaims: a.VeraisonPolicyClaims}
		if v := a.TrustVector; v != nil {
			s.Vector = &vectorJSON{v.Configuration, v.Executables, v.FileSystem, v.Hardware, v.InstanceIdentity, v.RuntimeOpaque, v.SourcedData, v.StorageOpaque}
		}
		out.Submods[name] = s
	}
	return json.Marshal(out)
}
