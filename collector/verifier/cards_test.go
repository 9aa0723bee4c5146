package verifier

import (
	"testing"

	"github.com/veraison/ear"
)

// TestAggregate: the device's vector is the worst warning or
// contraindication of its TPMs; what one TPM made no claim on is not
// affirmed for the device.
func TestAggregate(t *testing.T) {
	aff := ear.TrustVector{InstanceIdentity: ear.TrustworthyInstanceClaim, Executables: ear.ApprovedRuntimeClaim, Hardware: ear.GenuineHardwareClaim}
	stopped := ear.TrustVector{InstanceIdentity: ear.TrustworthyInstanceClaim, Hardware: ear.GenuineHardwareClaim} // no executables claim
	bad := aff
	bad.Executables = ear.ContraindicatedRuntimeClaim
	for _, tc := range []struct {
		name string
		subs []ear.TrustVector
		want ear.TrustVector
	}{
		{"all affirming", []ear.TrustVector{aff, aff}, aff},
		{"one made no executables claim", []ear.TrustVector{aff, stopped}, stopped},
		{"one contraindicated, one no claim", []ear.TrustVector{bad, stopped}, ear.TrustVector{InstanceIdentity: ear.TrustworthyInstanceClaim, Executables: ear.ContraindicatedRuntimeClaim, Hardware: ear.GenuineHardwareClaim}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var subs []TPMResult
			for _, v := range tc.subs {
				subs = append(subs, TPMResult{Vector: v})
			}
			if got := aggregate(subs); got != tc.want {
				t.Errorf("aggregate = %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		a, b ear.TrustTier
	}{{ear.TrustTierAffirming, ear.TrustTierNone}, {ear.TrustTierNone, ear.TrustTierWarning}, {ear.TrustTierWarning, ear.TrustTierContraindicated}} {
		if tierRank(tc.a) >= tierRank(tc.b) {
			t.Errorf("tierRank(%v) >= tierRank(%v)", tc.a, tc.b)
		}
	}
}
