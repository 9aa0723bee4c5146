package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

func openSim(t *testing.T) *TPM {
	t.Helper()
	tp, err := Open(context.Background(), "sim")
	if err != nil {
		t.Fatalf("Open(sim) = %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// exercise runs the full operation set against one TPM.
func exercise(t *testing.T, tp *TPM) {
	ctx := context.Background()
	banks, err := tp.Banks(ctx)
	if err != nil || len(banks) == 0 {
		t.Fatalf("Banks() = %v, %v", banks, err)
	}
	t.Logf("allocated banks: %v", banks)

	// Extend PCR 16 (resettable, debug) in every bank and check the value.
	var sel []pcr.Selection
	for _, b := range banks {
		sel = append(sel, pcr.Selection{Bank: b, PCRs: []int{0, 1, 16}})
	}
	before, err := tp.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatalf("ReadPCRs() = %v", err)
	}
	digests := map[alg.ID][]byte{}
	for _, b := range banks {
		digests[b] = b.Sum([]byte("riv test measurement"))
	}
	if err := tp.Extend(ctx, 16, digests); err != nil {
		t.Fatalf("Extend() = %v", err)
	}
	after, err := tp.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range banks {
		want := pcr.Extend(b, before.Get(b, 16), digests[b])
		if got := after.Get(b, 16); hex.EncodeToString(got) != hex.EncodeToString(want) {
			t.Errorf("%v PCR 16 = %x, want %x", b, got, want)
		}
	}

	for _, spec := range []KeySpec{{Alg: ECCP256, Restricted: true, Label: "IAK"}, {Alg: ECCP384, Restricted: true, Label: "IAK"}, {Alg: RSA2048, Restricted: true, Label: "IAK"}} {
		t.Run("quote-"+spec.Alg.String(), func(t *testing.T) {
			ak, err := tp.CreateKey(ctx, spec)
			if err != nil {
				t.Fatalf("CreateKey(%v) = %v", spec.Alg, err)
			}
			defer tp.Flush(ctx, ak)
			if !ak.Public.Has(quote.AttrRestricted | quote.AttrSign | quote.AttrFixedTPM | quote.AttrFixedParent | quote.AttrSensitiveDataOrigin) {
				t.Errorf("attributes 0x%x lack restricted/sign/fixed", ak.Public.Attributes)
			}
			nonce := make([]byte, 32)
			rand.Read(nonce)
			attest, sig, err := tp.Quote(ctx, ak, nonce, sel)
			if err != nil {
				t.Fatalf("Quote() = %v", err)
			}
			if _, err := quote.Verify(ak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: sel, PCRs: after}); err != nil {
				t.Errorf("Verify(quote) = %v", err)
			}
			if _, err := quote.Verify(ak.Public.Key, attest, sig, quote.Options{Nonce: nonce[1:], Selection: sel, PCRs: after}); !errors.Is(err, quote.ErrNonceMismatch) {
				t.Errorf("Verify(other nonce) = %v, want ErrNonceMismatch", err)
			}
			clock, err := tp.ReadClock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := quote.ParseAttest(attest)
			if a.ClockInfo.ResetCount != clock.ResetCount || a.ClockInfo.Clock > clock.Clock {
				t.Errorf("quote clock %+v vs ReadClock %+v", a.ClockInfo, clock)
			}
		})
	}

	t.Run("certify-and-signer", func(t *testing.T) {
		iak, err := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Restricted: true, Label: "IAK"})
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Flush(ctx, iak)
		idev, err := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Label: "IDevID"})
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Flush(ctx, idev)
		q := []byte("certify-challenge")
		attest, sig, err := tp.Certify(ctx, idev, iak, q)
		if err != nil {
			t.Fatalf("Certify() = %v", err)
		}
		a, err := quote.ParseAttest(attest)
		if err != nil || a.Certify == nil {
			t.Fatalf("ParseAttest(certify) = %v", err)
		}
		s, _ := quote.ParseSignature(sig)
		if err := quote.VerifySignature(iak.Public.Key, a.Raw, s); err != nil {
			t.Errorf("certify signature: %v", err)
		}
		if hex.EncodeToString(a.Certify.Name) != hex.EncodeToString(idev.Public.Name()) {
			t.Errorf("certified name %x, IDevID name %x", a.Certify.Name, idev.Public.Name())
		}
		if _, err := tp.Signer(iak); err == nil {
			t.Error("Signer(restricted IAK) succeeded")
		}
		for _, spec := range []KeySpec{{Alg: ECCP256, Label: "IDevID"}, {Alg: ECCP384, Label: "IDevID"}, {Alg: RSA2048, Label: "IDevID"}} {
			k, err := tp.CreateKey(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := tp.Signer(k)
			if err != nil {
				t.Fatal(err)
			}
			// A self-signed certificate exercises the signer as TLS would.
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "riv"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
			if err != nil {
				t.Fatalf("%v: CreateCertificate with TPM signer = %v", spec.Alg, err)
			}
			cert, _ := x509.ParseCertificate(der)
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("%v: self-signature = %v", spec.Alg, err)
			}
			if spec.Alg == RSA2048 {
				d := sha256.Sum256([]byte("pss"))
				ps, err := signer.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
				if err != nil || rsa.VerifyPSS(signer.Public().(*rsa.PublicKey), crypto.SHA256, d[:], ps, nil) != nil {
					t.Errorf("RSA-PSS sign: %v", err)
				}
			}
			if _, ok := signer.Public().(*ecdsa.PublicKey); !ok && spec.Alg != RSA2048 {
				t.Errorf("signer public key %T", signer.Public())
			}
			tp.Flush(ctx, k)
		}
	})

	t.Run("serialized", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := tp.ReadPCRs(ctx, sel); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent ReadPCRs: %v", err)
		}
	})

	t.Run("context", func(t *testing.T) {
		// Hold the TPM, then ask with a short deadline: the waiter gives up.
		tp.sem <- struct{}{}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := tp.ReadClock(cctx)
		<-tp.sem
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReadClock(while busy) = %v, want deadline exceeded", err)
		}
	})
}

func TestSimulator(t *testing.T) {
	tp := openSim(t)
	if _, err := Open(context.Background(), "sim"); !errors.Is(err, ErrSimulatorInUse) {
		t.Errorf("second Open(sim) = %v, want ErrSimulatorInUse", err)
	}
	exercise(t, tp)

	// A reset is a reboot: resetCount goes up, PCR 16 is back to zero.
	ctx := context.Background()
	c1, _ := tp.ReadClock(ctx)
	if err := tp.Reset(ctx); err != nil {
		t.Fatalf("Reset() = %v", err)
	}
	c2, _ := tp.ReadClock(ctx)
	if c2.ResetCount != c1.ResetCount+1 {
		t.Errorf("resetCount %d -> %d, want +1", c1.ResetCount, c2.ResetCount)
	}
	v, _ := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{16}}})
	if hex.EncodeToString(v.Get(alg.SHA256, 16)) != hex.EncodeToString(make([]byte, 32)) {
		t.Errorf("PCR 16 after reset = %x", v.Get(alg.SHA256, 16))
	}
}

// TestSwtpmDropsUnallocatedBank quotes a TPM with only the SHA-256 bank
// allocated while asking for SHA-1 too: the TPM silently drops the bank
// and the verifier must say so.
func TestSwtpmDropsUnallocatedBank(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, "sha256")
	ctx := context.Background()
	tp, err := Open(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	banks, _ := tp.Banks(ctx)
	if len(banks) != 1 || banks[0] != alg.SHA256 {
		t.Fatalf("Banks() = %v, want [sha256]", banks)
	}
	ak, err := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		t.Fatal(err)
	}
	want := []pcr.Selection{{Bank: alg.SHA1, PCRs: []int{0, 1}}, {Bank: alg.SHA256, PCRs: []int{0, 1}}}
	nonce := make([]byte, 32)
	attest, sig, err := tp.Quote(ctx, ak, nonce, want)
	if err != nil {
		t.Fatalf("Quote() = %v", err)
	}
	_, err = quote.Verify(ak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: want})
	if !errors.Is(err, quote.ErrSelectionMismatch) {
		t.Errorf("Verify() = %v, want ErrSelectionMismatch", err)
	}
}

func TestSwtpm(t *testing.T) {
	sw := tpmtest.StartSwtpm(t)
	tp, err := Open(context.Background(), sw.Spec())
	if err != nil {
		t.Fatalf("Open(%s) = %v", sw.Spec(), err)
	}
	defer tp.Close()
	exercise(t, tp)
}

// TestSwtpmCheckquote cross-checks a quote made here with tpm2-tools'
// independent verifier.
func TestSwtpmCheckquote(t *testing.T) {
	checkquote := testref.NeedTool(t, "tpm2_checkquote")
	sw := tpmtest.StartSwtpm(t)
	ctx := context.Background()
	tp, err := Open(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ak, err := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	attest, sig, err := tp.Quote(ctx, ak, nonce, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spki, _ := x509.MarshalPKIXPublicKey(ak.Public.Key)
	os.WriteFile(filepath.Join(dir, "ak.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600)
	os.WriteFile(filepath.Join(dir, "quote.bin"), attest, 0o600)
	os.WriteFile(filepath.Join(dir, "sig.bin"), sig, 0o600)
	run := func(n []byte) error {
		out, err := exec.Command(checkquote, "-u", filepath.Join(dir, "ak.pem"), "-m", filepath.Join(dir, "quote.bin"),
			"-s", filepath.Join(dir, "sig.bin"), "-g", "sha256", "-q", hex.EncodeToString(n)).CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := run(nonce); err != nil {
		t.Errorf("tpm2_checkquote = %v", err)
	}
	bad := append([]byte{}, nonce...)
	bad[0] ^= 1
	if err := run(bad); err == nil {
		t.Error("tpm2_checkquote accepted a wrong nonce")
	}
}

// TestSharedSwtpm: swtpm serves one connection at a time, as a TPM the
// kernel also uses is shared: a TPM opened shared must leave it free
// between operations, so another program (here riv-router measure, or
// IMA through /dev/tpmrm0) extends PCR 10 while the agent keeps it open.
func TestSharedSwtpm(t *testing.T) {
	sw := tpmtest.StartSwtpm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent, err := OpenShared(ctx, sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{10}}}
	before, err := agent.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		// Open (not shared) blocks until swtpm accepts it: with the agent
		// holding its connection, this would time out.
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		other, err := Open(octx, sw.Spec())
		if err != nil {
			ocancel()
			t.Fatalf("second client %d: %v", i, err)
		}
		d := sha256.Sum256([]byte{byte(i)})
		if err := other.Extend(octx, 10, map[alg.ID][]byte{alg.SHA256: d[:]}); err != nil {
			t.Fatal(err)
		}
		other.Close()
		ocancel()
	}
	after, err := agent.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before[alg.SHA256][10], after[alg.SHA256][10]) {
		t.Error("PCR 10 unchanged: the other client's extends did not reach the TPM the agent reads")
	}
	if _, err := OpenShared(ctx, "sim"); err == nil {
		t.Error("the in-process simulator was opened shared")
	}
}

// BenchmarkQuoteShared is the cost of holding a shared TPM (OpenShared:
// the agent of `riv-agent serve`, which dials the device or swtpm socket
// for every operation so that IMA and other programs get their turn)
// against keeping one connection (Open), interleaved so noise hits both
// alike: one TPM2_Quote of PCRs 0-10 on swtpm each.
func BenchmarkQuoteShared(b *testing.B) {
	sw := tpmtest.StartSwtpm(b)
	ctx := context.Background()
	held, err := Open(ctx, sw.Spec())
	if err != nil {
		b.Fatal(err)
	}
	k, err := held.CreateKey(ctx, KeySpec{Alg: ECCP256, Restricted: true, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if k, err = held.Persist(ctx, k, 0x81020010); err != nil {
		b.Fatal(err)
	}
	held.Close()
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
	nonce := make([]byte, 32)
	var heldT, sharedT time.Duration
	for b.Loop() {
		tp, err := Open(ctx, sw.Spec())
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, _, err := tp.Quote(ctx, k, nonce, sel); err != nil {
			b.Fatal(err)
		}
		heldT += time.Since(t1)
		tp.Close()
		st, err := OpenShared(ctx, sw.Spec())
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, _, err := st.Quote(ctx, k, nonce, sel); err != nil {
			b.Fatal(err)
		}
		sharedT += time.Since(t2)
	}
	b.ReportMetric(float64(heldT.Microseconds())/float64(b.N), "held-µs/quote")
	b.ReportMetric(float64(sharedT.Microseconds())/float64(b.N), "shared-µs/quote")
	b.ReportMetric(float64(sharedT)/float64(heldT), "x-held")
}
