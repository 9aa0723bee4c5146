package verifier

import (
	"fmt"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/rim"
)

// TestUnknownFilesCounted: past maxNames the names stop and the
// rest is counted, across polls; the text follows both.
func TestUnknownFilesCounted(t *testing.T) {
	rims := rim.NewIndex()
	st := &runtimeState{logType: logNetequip, rims: rims}
	pol := &Policy{RIMs: rims, ConfigFiles: DefaultConfigFiles}
	seq := 0
	poll := func(n int) string {
		l := &eventlog.Log{Format: eventlog.FormatIMA}
		for range n {
			name := fmt.Sprintf("/opt/x/%03d", seq)
			e := eventlog.IMAEntryFor(10, alg.SHA256, alg.SHA256.Sum([]byte(name)), name, nil, []alg.ID{alg.SHA256})
			e.Seq = seq
			seq++
			l.Events = append(l.Events, e)
		}
		st.advance(l, nil, pol)
		return st.found.unknown.String()
	}
	for _, c := range []struct {
		add         int
		first, last string
		more        int
	}{
		{3, "/opt/x/000", "/opt/x/002", 0},
		{maxNames - 3, "/opt/x/000", "/opt/x/099", 0},
		{7, "/opt/x/000", "/opt/x/099", 7},
		{5, "/opt/x/000", "/opt/x/099", 12},
	} {
		got := poll(c.add)
		if !strings.HasPrefix(got, c.first+" (sha256:") || !strings.Contains(got, c.last+" (sha256:") {
			t.Errorf("after %d files: %.80q... does not run from %s to %s", seq, got, c.first, c.last)
		}
		if want := fmt.Sprintf(" and %d more", c.more); (c.more > 0) != strings.HasSuffix(got, want) {
			t.Errorf("after %d files: text ends %q, want %d more counted", seq, got[max(0, len(got)-20):], c.more)
		}
		if n := strings.Count(got, "/opt/x/"); n != min(seq, maxNames) {
			t.Errorf("after %d files: %d names, want %d", seq, n, min(seq, maxNames))
		}
	}
}

// TestMergeIsClaiming: merging a partial result equals making its claims
// on the whole one, whichever trust-vector fields they are in.
func TestMergeIsClaiming(t *testing.T) {
	var r, p Result
	r.claim(&r.Vector.Executables, ear.ContraindicatedRuntimeClaim, "kernel")
	p.claim(&p.Vector.Executables, ear.ApprovedBootClaim, "")
	p.claim(&p.Vector.FileSystem, ear.UnrecognizedFilesClaim, "a file")
	p.claim(&p.Vector.Hardware, ear.ContraindicatedHardwareClaim, "hw")
	r.merge(&p)
	want := Result{Reasons: []string{"kernel", "a file", "hw"}}
	want.Vector.Executables, want.Vector.FileSystem, want.Vector.Hardware = ear.ContraindicatedRuntimeClaim, ear.UnrecognizedFilesClaim, ear.ContraindicatedHardwareClaim
	if r.Vector != want.Vector || strings.Join(r.Reasons, "|") != strings.Join(want.Reasons, "|") {
		t.Errorf("merged %+v %q, want %+v %q", r.Vector, r.Reasons, want.Vector, want.Reasons)
	}
}

// TestStatusNeverAffirmsUnappraised: AR4SI ranks unexpected evidence (1)
// below affirming, so the vector's tier alone would affirm a device
// whose logs could not be replayed; and an appraisal that ended before
// it judged the executables has affirmed nothing.
func TestStatusNeverAffirmsUnappraised(t *testing.T) {
	v := &Verifier{}
	for _, c := range []struct {
		name string
		set  func(*ear.TrustVector)
		want ear.TrustTier
	}{
		{"all affirmed", func(tv *ear.TrustVector) {
			tv.InstanceIdentity, tv.Executables, tv.Hardware = ear.TrustworthyInstanceClaim, ear.ApprovedBootClaim, ear.GenuineHardwareClaim
		}, ear.TrustTierAffirming},
		{"unexpected evidence", func(tv *ear.TrustVector) {
			tv.InstanceIdentity, tv.Executables, tv.Hardware = ear.TrustworthyInstanceClaim, ear.UnexpectedEvidenceClaim, ear.GenuineHardwareClaim
		}, ear.TrustTierContraindicated},
		{"verifier malfunction", func(tv *ear.TrustVector) {
			tv.InstanceIdentity, tv.Executables = ear.TrustworthyInstanceClaim, ear.VerifierMalfunctionClaim
		}, ear.TrustTierNone},
		{"executables not judged", func(tv *ear.TrustVector) {
			tv.InstanceIdentity, tv.Hardware = ear.TrustworthyInstanceClaim, ear.GenuineHardwareClaim
		}, ear.TrustTierNone},
		{"warning stays", func(tv *ear.TrustVector) {
			tv.InstanceIdentity, tv.Executables, tv.FileSystem = ear.TrustworthyInstanceClaim, ear.ApprovedBootClaim, ear.UnrecognizedFilesClaim
		}, ear.TrustTierWarning},
	} {
		r := &Result{}
		c.set(&r.Vector)
		if _, err := v.finish(r, nil); err != nil {
			t.Fatal(err)
		}
		if r.Status != c.want {
			t.Errorf("%s: status %v, want %v", c.name, r.Status, c.want)
		}
	}
}

// TestUnexpectedEvidenceNotHidden: unexpected evidence claimed after an
// affirming claim on the same component (the identity is affirmed before
// the TPM's banks are known) replaces it.
func TestUnexpectedEvidenceNotHidden(t *testing.T) {
	r := &Result{}
	r.claim(&r.Vector.InstanceIdentity, ear.TrustworthyInstanceClaim, "")
	r.claim(&r.Vector.InstanceIdentity, ear.UnexpectedEvidenceClaim, "the TPM allocates none of the banks")
	if r.Vector.InstanceIdentity != ear.UnexpectedEvidenceClaim {
		t.Errorf("instance-identity %v after unexpected evidence", r.Vector.InstanceIdentity)
	}
	r.claim(&r.Vector.InstanceIdentity, ear.TrustworthyInstanceClaim, "")
	if r.Vector.InstanceIdentity != ear.UnexpectedEvidenceClaim {
		t.Errorf("an affirming claim replaced unexpected evidence: %v", r.Vector.InstanceIdentity)
	}
}
