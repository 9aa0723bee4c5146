package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
)

// supportSession is a device that answers only its support.
type supportSession struct {
	sup *evidence.Support
	n   int
}

func (s *supportSession) Support(context.Context) (*evidence.Support, error) {
	s.n++
	return s.sup, nil
}

func (s *supportSession) Logs(context.Context, string, *uint64) (*eventlog.Log, uint32, error) {
	return nil, 0, errors.New("no logs")
}

func (s *supportSession) Collect(context.Context, []byte, []pcr.Selection, []evidence.LogRequest) ([]evidence.Quote, []evidence.LogResult, error) {
	return nil, nil, errors.New("no quotes")
}

// TestCardCertificates: a line card whose pair has no verdict cached, in
// a poll that has only the kept certificates, is verified on the
// certificates the device lists with the kept digests; a device that no
// longer lists them is not appraised, and its next poll fetches them.
func TestCardCertificates(t *testing.T) {
	now := time.Now()
	ca, err := identity.NewCA("Manufacturer", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dev := identity.Device{Serial: "RTR-1", Model: "m", Organization: "o"}
	issue := func(role identity.Role) evidence.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c, err := ca.Issue(role, k.Public(), dev, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return evidence.Certificate{Name: role.String(), Cert: c, TPM: "card1"}
	}
	id, cardAK, other := issue(identity.IDevID), issue(identity.IAK), issue(identity.IAK)
	id.TPM, cardAK.Type, other.Type = "main", typeIAK, typeIAK
	tpms := []evidence.TPM{{Name: "main"}, {Name: "card1"}}
	kept := newSupport(&evidence.Support{Certificates: []evidence.Certificate{id, cardAK}, TPMs: tpms}).kept()
	for _, tc := range []struct {
		name    string
		listed  []evidence.Certificate
		wantErr bool
	}{
		{"listed", []evidence.Certificate{cardAK, id}, false},
		{"another attestation key", []evidence.Certificate{id, other}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := New(Policy{}, nil)
			v.state["d"] = &deviceState{sup: kept, supTime: now}
			s := &supportSession{sup: &evidence.Support{Certificates: tc.listed, TPMs: tpms}}
			c := &poll{v: v, r: &Result{Device: "d"}, device: cardKey("d", "card1", kept.certs[1].rawKey), s: s,
				sup: kept, idCert: &kept.certs[0], ak: &kept.certs[1]}
			if _, ok := v.verifyPair(c.idCert, c.ak, nil, false); ok {
				t.Fatal("verifyPair of kept certificates without a cached verdict: ok")
			}
			err := c.certificates(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("certificates() = %v, want an error: %v", err, tc.wantErr)
			}
			if s.n != 1 {
				t.Errorf("certificates() fetched the support %d times, want 1", s.n)
			}
			if tc.wantErr {
				if st := v.state["d"]; !st.supTime.IsZero() {
					t.Errorf("the device's support kept until %v after it no longer listed its certificates, want it fetched next poll", st.supTime)
				}
				return
			}
			if c.ak.x509 != cardAK.Cert || c.idCert.x509 != id.Cert {
				t.Errorf("certificates() set the card's pair to %v, %v; want the listed certificates", c.idCert.x509.Subject, c.ak.x509.Subject)
			}
			if kept.certs[0].x509 != nil || kept.certs[1].x509 != nil {
				t.Error("the kept support now holds the parsed certificates")
			}
			if _, ok := v.verifyPair(c.idCert, c.ak, nil, false); !ok {
				t.Error("verifyPair of the fetched certificates: not verified")
			}
		})
	}
}
