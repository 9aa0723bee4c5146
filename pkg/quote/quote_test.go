package quote

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

type vector struct {
	name   string
	pub    crypto.PublicKey
	attest []byte
	sig    []byte
	nonce  []byte
	pcrs   pcr.Values
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unb64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemKey(t testing.TB, b []byte) crypto.PublicKey {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// referenceQuotes loads every quote set in reference/quotes.
func referenceQuotes(t testing.TB) []vector {
	t.Helper()
	var out []vector

	// keylime checkquote: RSA AK (SPKI PEM), SHA-256 quote of PCR16.
	var kl struct {
		NonceHex string                       `json:"nonce_hex"`
		PCRs     map[string]map[string]string `json:"pcrs"`
	}
	if err := json.Unmarshal(testref.Read(t, "quotes/keylime-checkquote/vector.json"), &kl); err != nil {
		t.Fatal(err)
	}
	klPCRs := pcr.Values{}
	for i, v := range kl.PCRs["sha256"] {
		var idx int
		json.Unmarshal([]byte(i), &idx)
		klPCRs.Set(alg.SHA256, idx, unhex(t, v))
	}
	out = append(out, vector{
		name:   "keylime-checkquote",
		pub:    pemKey(t, testref.Read(t, "quotes/keylime-checkquote/ak.pem")),
		attest: testref.Read(t, "quotes/keylime-checkquote/quote.bin"),
		sig:    testref.Read(t, "quotes/keylime-checkquote/sig.bin"),
		nonce:  unhex(t, kl.NonceHex),
		pcrs:   klPCRs,
	})

	// go-tpm-tools GCE: RSA AK as TPMT_PUBLIC, three quotes (one per bank).
	var gce struct {
		AKPub  string `json:"ak_pub_tpmt_public_hex"`
		Nonce  string `json:"nonce_hex"`
		Quotes []struct {
			Bank   string            `json:"pcr_bank"`
			Attest string            `json:"tpms_attest_hex"`
			Sig    string            `json:"tpmt_signature_hex"`
			PCRs   map[string]string `json:"pcrs"`
		} `json:"quotes"`
	}
	if err := json.Unmarshal(testref.Read(t, "quotes/go-tpm-tools/gce-cos-85-no-nonce.json"), &gce); err != nil {
		t.Fatal(err)
	}
	akPub, err := ParsePublic(unhex(t, gce.AKPub))
	if err != nil {
		t.Fatalf("ParsePublic(gce AK): %v", err)
	}
	for _, q := range gce.Quotes {
		bank, err := alg.ParseHash(q.Bank)
		if err != nil {
			t.Fatal(err)
		}
		vals := pcr.Values{}
		for i, v := range q.PCRs {
			var idx int
			json.Unmarshal([]byte(i), &idx)
			vals.Set(bank, idx, unhex(t, v))
		}
		out = append(out, vector{name: "gce-cos-85-" + q.Bank, pub: akPub.Key, attest: unhex(t, q.Attest), sig: unhex(t, q.Sig), nonce: unhex(t, gce.Nonce), pcrs: vals})
	}

	// go-attestation Windows GCE shielded VM: SHA-1 PCR quote, RSASSA.
	var win struct {
		AK    struct{ Public string }
		Quote struct{ Nonce, Quote, Signature string }
		Log   struct {
			PCRs []struct {
				Index     int
				Digest    string
				DigestAlg int
			}
		}
	}
	if err := json.Unmarshal(testref.Read(t, "quotes/go-attestation/windows_gcp_shielded_vm.json"), &win); err != nil {
		t.Fatal(err)
	}
	winAK, err := ParsePublic(unb64(t, win.AK.Public))
	if err != nil {
		t.Fatalf("ParsePublic(windows AK): %v", err)
	}
	winPCRs := pcr.Values{}
	for _, p := range win.Log.PCRs {
		bank, ok := alg.HashByCrypto(crypto.Hash(p.DigestAlg))
		if !ok {
			t.Fatalf("windows PCR alg %d", p.DigestAlg)
		}
		winPCRs.Set(bank, p.Index, unb64(t, p.Digest))
	}
	out = append(out, vector{name: "windows-gcp-shielded-vm", pub: winAK.Key, attest: unb64(t, win.Quote.Quote), sig: unb64(t, win.Quote.Signature), nonce: unb64(t, win.Quote.Nonce), pcrs: winPCRs})

	// veraison EnactTrust token: node-id(16) || TPM2B_ATTEST || TPMT_SIGNATURE,
	// P-256 key, PCR digest given (no PCR values).
	tok := testref.Read(t, "quotes/veraison-services/tpm-enacttrust/evidence/basic.token")
	n := int(tok[16])<<8 | int(tok[17])
	out = append(out, vector{name: "veraison-enacttrust", pub: pemKey(t, testref.Read(t, "quotes/veraison-services/tpm-enacttrust/keys/basic.pem.pub")),
		attest: tok[16 : 18+n], sig: tok[18+n:]})

	// veraison PARSEC TPM: the platform attestation token is a quote by the
	// attestation key provisioned in the CoMID trust-anchor triple.
	var parsec struct {
		PAT struct {
			Sig        []byte `cbor:"sig"`
			AttestInfo []byte `cbor:"attestInfo"`
		} `cbor:"pat"`
	}
	if err := cbor.Unmarshal(testref.Read(t, "quotes/veraison-services/parsec-tpm/evidence/evidence.cbor"), &parsec); err != nil {
		t.Fatalf("parsec evidence: %v", err)
	}
	var ta struct {
		Triples struct {
			AVK []struct {
				Keys []struct{ Value string } `json:"verification-keys"`
			} `json:"attester-verification-keys"`
		} `json:"triples"`
	}
	if err := json.Unmarshal(testref.Read(t, "quotes/veraison-services/parsec-tpm/corim/src/comid-parsec-tpm-ta.json"), &ta); err != nil {
		t.Fatal(err)
	}
	pa, err := ParseAttest(parsec.PAT.AttestInfo)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, vector{name: "veraison-parsec-tpm", pub: pemKey(t, []byte(ta.Triples.AVK[0].Keys[0].Value)), attest: parsec.PAT.AttestInfo, sig: parsec.PAT.Sig, nonce: pa.ExtraData})
	return out
}

func TestReferenceQuotesVerify(t *testing.T) {
	for _, v := range referenceQuotes(t) {
		t.Run(v.name, func(t *testing.T) {
			res, err := Verify(v.pub, v.attest, v.sig, Options{Nonce: v.nonce, PCRs: v.pcrs})
			if err != nil {
				t.Fatalf("Verify() = %v, want nil", err)
			}
			if v.pcrs == nil {
				return
			}
			// Requesting exactly what was quoted passes; requesting one more
			// bank fails with the selection sentinel.
			if _, err := Verify(v.pub, v.attest, v.sig, Options{Nonce: v.nonce, PCRs: v.pcrs, Selection: res.Selection}); err != nil {
				t.Errorf("Verify(selection as quoted) = %v", err)
			}
			more := append(append([]pcr.Selection{}, res.Selection...), pcr.Selection{Bank: alg.SHA512, PCRs: []int{0}})
			if _, err := Verify(v.pub, v.attest, v.sig, Options{Nonce: v.nonce, PCRs: v.pcrs, Selection: more}); !errors.Is(err, ErrSelectionMismatch) {
				t.Errorf("Verify(extra bank) = %v, want ErrSelectionMismatch", err)
			}
		})
	}
}

func TestReferenceQuotesTampered(t *testing.T) {
	for _, v := range referenceQuotes(t) {
		t.Run(v.name, func(t *testing.T) {
			flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 0x01; return c }
			a, err := ParseAttest(v.attest)
			if err != nil {
				t.Fatal(err)
			}
			// The clock field sits right after the magic, type, signer name
			// and extraData; flipping it keeps the structure valid.
			off := len(v.attest) - len(a.Raw) + 6 + 2 + len(a.QualifiedSigner) + 2 + len(a.ExtraData) + 3
			// For the signature, flip a byte in the middle of the value.
			type tamper struct {
				name   string
				attest []byte
				sig    []byte
				nonce  []byte
				pcrs   pcr.Values
				want   error
			}
			cases := []tamper{
				{"nonce", v.attest, v.sig, append(bytes.Clone(v.nonce), 0x01), v.pcrs, ErrNonceMismatch},
				{"signature byte", v.attest, flip(v.sig, len(v.sig)-10), v.nonce, v.pcrs, ErrSignature},
				{"attested byte", flip(v.attest, off), v.sig, v.nonce, v.pcrs, ErrSignature},
			}
			if v.pcrs != nil {
				alt := pcr.Values{}
				for _, b := range v.pcrs.Banks() {
					for _, i := range v.pcrs.Indexes(b) {
						alt.Set(b, i, v.pcrs.Get(b, i))
					}
				}
				b := alt.Banks()[0]
				i := alt.Indexes(b)[0]
				alt[b][i] = flip(alt[b][i], 0)
				cases = append(cases, tamper{"pcr value", v.attest, v.sig, v.nonce, alt, ErrPCRDigestMismatch})
			}
			for _, c := range cases {
				_, err := Verify(v.pub, c.attest, c.sig, Options{Nonce: c.nonce, PCRs: c.pcrs})
				if !errors.Is(err, c.want) {
					t.Errorf("%s altered: Verify() = %v, want %v", c.name, err, c.want)
				}
				if !IsEvidenceError(err) {
					t.Errorf("%s altered: IsEvidenceError(%v) = false", c.name, err)
				}
			}
		})
	}
}

func TestKeylimeParsedFields(t *testing.T) {
	a, err := ParseAttest(testref.Read(t, "quotes/keylime-checkquote/quote.bin"))
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		Type  uint16
		Clock ClockInfo
		FW    uint64
		Sel   []pcr.Selection
		Dig   string
	}{a.Type, a.ClockInfo, a.FirmwareVersion, a.Quote.Selection, hex.EncodeToString(a.Quote.PCRDigest)}
	want := struct {
		Type  uint16
		Clock ClockInfo
		FW    uint64
		Sel   []pcr.Selection
		Dig   string
	}{0x8018, ClockInfo{Clock: 1284787942, ResetCount: 3, RestartCount: 0, Safe: true}, 0x2019102300163636,
		[]pcr.Selection{{Bank: alg.SHA256, PCRs: []int{16}}}, "6d4d3749132f6257172164cd5ff3135f447973d4a5c84e018901f6753705b701"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseAttest(keylime) mismatch (-want +got):\n%s", diff)
	}
}

// TestAttestzCertify checks the openconfig attestz TPM2_Certify vector: an
// HMAC-signed certification of a P-384 IAK whose Name must match.
func TestAttestzCertify(t *testing.T) {
	info := testref.Read(t, "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_certify_info.bin")
	sigb := testref.Read(t, "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_certify_info_signature.bin")
	pubb := testref.Read(t, "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_pub.bin")
	sens := testref.Read(t, "quotes/attestz-enrollz-hmac-challenge/sensitive.bin")

	a, err := ParseAttest(info)
	if err != nil {
		t.Fatalf("ParseAttest: %v", err)
	}
	if a.Type != TypeCertify {
		t.Fatalf("type = 0x%x, want certify", a.Type)
	}
	iak, err := ParsePublic(pubb)
	if err != nil {
		t.Fatalf("ParsePublic: %v", err)
	}
	if iak.Curve != CurveP384 || iak.NameAlg != alg.SHA384 {
		t.Errorf("IAK curve/nameAlg = %x/%v, want P-384/sha384", iak.Curve, iak.NameAlg)
	}
	if !bytes.Equal(a.Certify.Name, iak.Name()) {
		t.Errorf("certified name %x != IAK name %x", a.Certify.Name, iak.Name())
	}
	sig, err := ParseSignature(sigb)
	if err != nil {
		t.Fatal(err)
	}
	// TPMT_SENSITIVE: type, authValue, seedValue, then the HMAC key.
	r := newReader(sens)
	r.U16("type")
	r.Sized(64, "auth")
	r.Sized(64, "seed")
	key := r.Sized(128, "key")
	if err := r.Done("sensitive"); err != nil {
		t.Fatal(err)
	}
	if err := VerifyHMAC(key, a.Raw, sig); err != nil {
		t.Errorf("VerifyHMAC() = %v", err)
	}
	bad := bytes.Clone(a.Raw)
	bad[10] ^= 1
	if err := VerifyHMAC(key, bad, sig); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyHMAC(altered) = %v, want ErrSignature", err)
	}
}

func TestParsePublicReference(t *testing.T) {
	for _, f := range []string{"quotes/hirs-tpm2-objects/ak.pub", "quotes/hirs-tpm2-objects/ek.pub", "quotes/attestz-enrollz-hmac-challenge/iak-TPMT_PUBLIC.bin"} {
		p, err := ParsePublic(testref.Read(t, f))
		if err != nil {
			t.Errorf("ParsePublic(%s) = %v", f, err)
			continue
		}
		if p.Key == nil {
			t.Errorf("ParsePublic(%s): no key", f)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := testref.Read(t, "quotes/keylime-checkquote/quote.bin")
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"magic", append([]byte{0xff, 0x54, 0x43, 0x46}, good[4:]...), ErrBadMagic},
		{"huge size", append(bytes.Clone(good[:6]), 0xff, 0xff), ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := ParseAttest(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("ParseAttest(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ParseSignature([]byte{0x00, 0x18, 0x00, 0x0b, 0x00, 0x20}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseSignature(truncated) = %v", err)
	}
	if _, err := ParseSignature([]byte{0x12, 0x34}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseSignature(unknown alg) = %v", err)
	}
}
