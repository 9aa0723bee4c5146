package softtpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
)

// TestQuoteVerifies: a software quote is a TPM quote to pkg/quote — its
// signature, nonce, selection, PCR digest and qualifiedSigner check — and
// any change to it or to the PCRs is caught.
func TestQuoteVerifies(t *testing.T) {
	ctx := context.Background()
	for _, spec := range []tpm.KeySpec{{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"}, {Alg: tpm.ECCP384, Restricted: true, Label: "IAK"}} {
		st, err := New(alg.SHA256, alg.SHA384)
		if err != nil {
			t.Fatal(err)
		}
		k, signer, err := st.CreateKey(spec)
		if err != nil {
			t.Fatal(err)
		}
		if signer != nil {
			t.Errorf("%v: a restricted key has a signer", spec.Alg)
		}
		if !k.Public.Has(quote.AttrRestricted | quote.AttrSign | quote.AttrFixedTPM) {
			t.Errorf("%v: attributes %#x", spec.Alg, k.Public.Attributes)
		}
		d := alg.SHA256.Sum([]byte("kernel"))
		if err := st.Extend(ctx, 4, map[alg.ID][]byte{alg.SHA256: d, alg.SHA384: alg.SHA384.Sum([]byte("kernel"))}); err != nil {
			t.Fatal(err)
		}
		sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 4, 10}}, {Bank: alg.SHA384, PCRs: []int{4}}}
		vals, err := st.ReadPCRs(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if want := alg.SHA256.Sum(append(make([]byte, 32), d...)); !bytes.Equal(vals.Get(alg.SHA256, 4), want) {
			t.Fatalf("PCR 4 %x, want %x", vals.Get(alg.SHA256, 4), want)
		}
		nonce := make([]byte, 32)
		rand.Read(nonce)
		a, s, err := st.Quote(ctx, k, nonce, sel)
		if err != nil {
			t.Fatal(err)
		}
		res, err := quote.Verify(k.Public.Key, a, s, quote.Options{Nonce: nonce, Selection: sel, PCRs: vals})
		if err != nil {
			t.Fatalf("%v: software quote does not verify: %v", spec.Alg, err)
		}
		if !bytes.Equal(res.Attest.QualifiedSigner, k.Public.Name()) || !res.Attest.ClockInfo.Safe {
			t.Errorf("%v: qualifiedSigner %x, clock %+v", spec.Alg, res.Attest.QualifiedSigner, res.Attest.ClockInfo)
		}
		other := bytes.Clone(nonce)
		other[0] ^= 1
		if _, err := quote.Verify(k.Public.Key, a, s, quote.Options{Nonce: other, Selection: sel, PCRs: vals}); !errors.Is(err, quote.ErrNonceMismatch) {
			t.Errorf("%v: another nonce: %v", spec.Alg, err)
		}
		bad := bytes.Clone(a)
		bad[len(bad)-1] ^= 1
		if _, err := quote.Verify(k.Public.Key, bad, s, quote.Options{Nonce: nonce, Selection: sel}); !errors.Is(err, quote.ErrSignature) {
			t.Errorf("%v: altered TPMS_ATTEST: %v", spec.Alg, err)
		}
		st.Extend(ctx, 10, map[alg.ID][]byte{alg.SHA256: d})
		later, _ := st.ReadPCRs(ctx, sel)
		if _, err := quote.Verify(k.Public.Key, a, s, quote.Options{Nonce: nonce, Selection: sel, PCRs: later}); !errors.Is(err, quote.ErrPCRDigestMismatch) {
			t.Errorf("%v: PCRs extended after the quote: %v", spec.Alg, err)
		}
	}
}

// TestReset: a reboot resets the PCRs and counts; the clock goes on.
func TestReset(t *testing.T) {
	ctx := context.Background()
	st, _ := New()
	now := time.Unix(1000, 0)
	st.now = func() time.Time { return now }
	st.Reset()
	st.Extend(ctx, 0, map[alg.ID][]byte{alg.SHA256: make([]byte, 32)})
	now = now.Add(5 * time.Second)
	before, _ := st.ReadClock(ctx)
	st.Reset()
	after, _ := st.ReadClock(ctx)
	if after.ResetCount != before.ResetCount+1 || after.Clock < before.Clock {
		t.Errorf("clock %+v then %+v", before, after)
	}
	v, _ := st.ReadPCRs(ctx, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0}}})
	if !bytes.Equal(v.Get(alg.SHA256, 0), make([]byte, 32)) {
		t.Errorf("PCR 0 after a reset: %x", v.Get(alg.SHA256, 0))
	}
	if err := st.Extend(ctx, 24, map[alg.ID][]byte{alg.SHA256: make([]byte, 32)}); err == nil {
		t.Error("extend of PCR 24 succeeded")
	}
	if err := st.Extend(ctx, 1, map[alg.ID][]byte{alg.SHA1: make([]byte, 20)}); err == nil {
		t.Error("extend of an unallocated bank succeeded")
	}
}

// TestSameStructuresAsATPM: against the in-process TPM simulator (the
// reference implementation), the same key template gives the same
// TPMT_PUBLIC byte for byte, and a software quote has the shape of the
// TPM's: equal lengths, type, signer Name, selection and signature form.
func TestSameStructuresAsATPM(t *testing.T) {
	ctx := context.Background()
	real, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	spec := tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"}
	rk, err := real.CreateKey(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := tpm.SoftwareKey(spec, rk.Public.Key.(*ecdsa.PublicKey), 0x81000000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sk.Public.Raw, rk.Public.Raw) || !bytes.Equal(sk.Name.Buffer, rk.Name.Buffer) {
		t.Fatalf("TPMT_PUBLIC differs:\nsoftware %x\nTPM      %x", sk.Public.Raw, rk.Public.Raw)
	}

	st, _ := New()
	k, _, err := st.CreateKey(spec)
	if err != nil {
		t.Fatal(err)
	}
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
	nonce := make([]byte, 32)
	ra, rs, err := real.Quote(ctx, rk, nonce, sel)
	if err != nil {
		t.Fatal(err)
	}
	sa, ss, err := st.Quote(ctx, k, nonce, sel)
	if err != nil {
		t.Fatal(err)
	}
	rq, err1 := quote.ParseAttest(ra)
	sq, err2 := quote.ParseAttest(sa)
	rsig, err3 := quote.ParseSignature(rs)
	ssig, err4 := quote.ParseSignature(ss)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	if len(ra) != len(sa) || len(rs) != len(ss) || rq.Type != sq.Type || len(rq.QualifiedSigner) != len(sq.QualifiedSigner) ||
		rsig.Alg != ssig.Alg || rsig.Hash != ssig.Hash || !bytes.Equal(quote.AppendSelection(nil, rq.Quote.Selection), quote.AppendSelection(nil, sq.Quote.Selection)) {
		t.Errorf("software quote (%d+%d bytes, %+v) differs in form from the TPM's (%d+%d bytes, %+v)", len(sa), len(ss), sq, len(ra), len(rs), rq)
	}
	// With the same PCRs (both fresh) the PCR digests agree too.
	if !bytes.Equal(rq.Quote.PCRDigest, sq.Quote.PCRDigest) {
		t.Errorf("PCR digest %x, the TPM's %x", sq.Quote.PCRDigest, rq.Quote.PCRDigest)
	}
}
