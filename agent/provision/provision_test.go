package provision

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
	"github.com/openriv/riv/testbed/manufacturer"
)

func TestProvisionManufacturedTPM(t *testing.T) {
	for _, alg := range []tpm.KeyAlg{tpm.ECCP256, tpm.ECCP384, tpm.RSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			sw := tpmtest.StartManufacturedSwtpm(t)
			ctx := context.Background()
			tp, err := tpm.Open(ctx, sw.Spec())
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			mfr, err := manufacturer.New("RIV Test Manufacturer", false, sw.CARoot, sw.CAIntermediate)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			opts := Options{Serial: "RTR-0042", Model: "rtr-1000", Alg: alg, Dir: dir}
			res, err := Provision(ctx, tp, mfr, opts)
			if err != nil {
				t.Fatalf("Provision() = %v", err)
			}
			if !res.Created {
				t.Error("first provisioning reported nothing created")
			}
			roots := x509.NewCertPool()
			roots.AddCert(mfr.CA.Cert)
			r := identity.VerifyPair(res.ID, res.AK, identity.VerifyOptions{Roots: roots, Serial: "RTR-0042"})
			if !r.OK {
				t.Errorf("VerifyPair(provisioned) = %v", r.Reasons)
			}
			san, err := identity.ParseSAN(res.ID)
			if err != nil || san.Permanent == nil || len(san.Permanent.IdentifierValue) != 64 {
				t.Errorf("IDevID permanentIdentifier (EK hash) = %+v, %v", san, err)
			}
			if res.AKKey.Handle != 0x81020000 || res.IDKey.Handle != 0x81020001 {
				t.Errorf("handles 0x%x/0x%x", res.AKKey.Handle, res.IDKey.Handle)
			}

			// Again: nothing changes.
			again, err := Provision(ctx, tp, mfr, opts)
			if err != nil {
				t.Fatal(err)
			}
			if again.Created || !again.ID.Equal(res.ID) || !again.AK.Equal(res.AK) {
				t.Error("second provisioning was not a no-op")
			}

			// Owner enrollment of LDevID/LAK as a second step.
			owner, _ := manufacturer.New("Operator Owner CA", true, sw.CARoot, sw.CAIntermediate)
			local, err := Provision(ctx, tp, owner, Options{Serial: "RTR-0042", Model: "rtr-1000", Alg: alg, Dir: dir, Local: true})
			if err != nil {
				t.Fatalf("Provision(local) = %v", err)
			}
			oroots := x509.NewCertPool()
			oroots.AddCert(owner.CA.Cert)
			if r := identity.VerifyPair(local.ID, local.AK, identity.VerifyOptions{Roots: oroots, Local: true}); !r.OK {
				t.Errorf("VerifyPair(LDevID, LAK) = %v", r.Reasons)
			}
		})
	}
}

func TestProvisionRefusesUnknownTPMVendor(t *testing.T) {
	sw := tpmtest.StartManufacturedSwtpm(t)
	other := tpmtest.StartManufacturedSwtpm(t) // another vendor's CA
	ctx := context.Background()
	tp, err := tpm.Open(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	mfr, _ := manufacturer.New("RIV Test Manufacturer", false, other.CARoot, other.CAIntermediate)
	_, err = Provision(ctx, tp, mfr, Options{Serial: "RTR-1", Model: "rtr-1000", Dir: t.TempDir()})
	if !errors.Is(err, identity.ErrEnrollment) || !strings.Contains(err.Error(), "EK certificate") {
		t.Errorf("Provision(untrusted EK) = %v, want an EK certificate refusal", err)
	}
}
