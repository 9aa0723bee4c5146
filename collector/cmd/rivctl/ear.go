package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/veraison/ear"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/rim"
)

// loadEARKey reads the EAR signing key: a PEM private key or a private
// JWK, ECDSA on P-256 or P-384 (ES256, ES384).
func loadEARKey(path string) (crypto.Signer, error) {
	b, err := readInput(path)
	if err != nil {
		return nil, err
	}
	var k crypto.Signer
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		if k, err = parsePrivateJWK(b); err != nil {
			return nil, badInput("--ear-key %s: %v", path, err)
		}
	} else if k, err = loadPrivateKey(path); err != nil {
		return nil, err
	}
	if _, err := earAlg(k.Public()); err != nil {
		return nil, badInput("--ear-key %s: %v", path, err)
	}
	return k, nil
}

func parsePrivateJWK(b []byte) (crypto.Signer, error) {
	var j struct{ Kty, Crv, D string }
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("not a JWK: %v", err)
	}
	if j.Kty != "EC" || j.D == "" {
		return nil, fmt.Errorf("want a private EC JWK (kty EC with d), have kty %q", j.Kty)
	}
	curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}
	c, ok := curves[j.Crv]
	if !ok {
		return nil, fmt.Errorf("curve %q: want P-256 or P-384", j.Crv)
	}
	d, err := base64.RawURLEncoding.DecodeString(j.D)
	if err != nil {
		return nil, fmt.Errorf("d: %v", err)
	}
	k, err := ecdsa.ParseRawPrivateKey(c, d)
	if err != nil {
		return nil, err
	}
	// The public half, if given, must be this key's.
	pub, err := rim.ParsePublicKey(b)
	if err == nil && !k.PublicKey.Equal(pub) {
		return nil, fmt.Errorf("x and y are not the public key of d")
	}
	return k, nil
}

// earAlg is the JWS algorithm RIV signs EARs with for the key.
func earAlg(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		}
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("key is %T, want ECDSA P-256 or P-384", pub)
}

// maxEAR bounds an EAR read: RIV's are under 2 KiB.
const maxEAR = 1 << 20

func readEAR(path string) ([]byte, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, maxEAR+1))
		if err != nil {
			return nil, badInput("stdin: %v", err)
		}
	} else if b, err = readInput(path); err != nil {
		return nil, err
	}
	if len(b) > maxEAR {
		return nil, badInput("%s: larger than an EAR", path)
	}
	b = bytes.TrimSpace(b)
	if bytes.Count(b, []byte(".")) != 2 {
		return nil, badInput("%s: not a compact JWT (header.claims.signature)", path)
	}
	return b, nil
}

// earClaims decodes the claims of a compact JWT without verifying it.
func earClaims(tok []byte) (json.RawMessage, error) {
	parts := bytes.Split(tok, []byte("."))
	claims, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil || !json.Valid(claims) {
		return nil, fmt.Errorf("the claims are not base64url JSON")
	}
	return claims, nil
}

func cmdEARVerify(env *cli.Env, args []string) error {
	fs := env.Flags()
	keyFile := fs.String("key", "", "the verifier's public key `FILE`: PEM/DER SPKI, certificate, JWK (or its private key)")
	asJSON := fs.Bool("json", false, "print JSON")
	maxAge := fs.Duration("max-age", 0, "refuse an EAR issued longer ago than this (0: any age)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyFile == "" {
		return badInput("ear verify: want --key FILE and one EAR file (- for stdin)")
	}
	tok, err := readEAR(fs.Arg(0))
	if err != nil {
		return err
	}
	kb, err := readInput(*keyFile)
	if err != nil {
		return err
	}
	pub, err := rim.ParsePublicKey(kb)
	if err != nil {
		priv, perr := loadEARKey(*keyFile)
		if perr != nil {
			return badInput("--key %s: %v", *keyFile, err)
		}
		pub = priv.Public()
	}
	alg, err := earAlg(pub)
	if err != nil {
		return badInput("--key %s: %v", *keyFile, err)
	}
	var ar ear.AttestationResult
	if err := ar.Verify(tok, alg, pub); err != nil {
		return cli.Failed("ear verify: %s: %v", fs.Arg(0), err)
	}
	if *maxAge > 0 && ar.IssuedAt != nil && time.Since(time.Unix(*ar.IssuedAt, 0)) > *maxAge {
		return cli.Failed("ear verify: %s: issued %s, longer ago than --max-age %s", fs.Arg(0), time.Unix(*ar.IssuedAt, 0).UTC().Format(time.RFC3339), *maxAge)
	}
	status := worstStatus(&ar)
	if *asJSON {
		claims, _ := earClaims(tok)
		b, _ := json.Marshal(struct {
			Verified bool            `json:"verified"`
			Status   string          `json:"status"`
			Claims   json.RawMessage `json:"claims"`
		}{true, status, claims})
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		fmt.Fprintf(env.Stdout, "EAR signature verified (%s): %s\n", alg, strings.ToUpper(status))
		printEAR(env.Stdout, &ar)
	}
	if status != "affirming" {
		return cli.Failed("ear verify: %s: the verdict is %s", fs.Arg(0), status)
	}
	return nil
}

func cmdEARShow(env *cli.Env, args []string) error {
	fs := env.Flags()
	asJSON := fs.Bool("json", false, "print the claims as JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("ear show: want one EAR file (- for stdin)")
	}
	tok, err := readEAR(fs.Arg(0))
	if err != nil {
		return err
	}
	claims, err := earClaims(tok)
	if err != nil {
		return badInput("%s: %v", fs.Arg(0), err)
	}
	var ar ear.AttestationResult
	if *asJSON || ar.UnmarshalJSON(claims) != nil {
		// Claims RIV cannot read as veraison's EAR (the draft-03
		// profile) are shown as they are.
		var out bytes.Buffer
		json.Indent(&out, claims, "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", out.Bytes())
		return nil
	}
	fmt.Fprintln(env.Stdout, "EAR (signature not verified; use rivctl ear verify):")
	printEAR(env.Stdout, &ar)
	return nil
}

func printEAR(out io.Writer, ar *ear.AttestationResult) {
	if ar.VerifierID != nil && ar.VerifierID.Developer != nil {
		b := ""
		if ar.VerifierID.Build != nil {
			b = " " + *ar.VerifierID.Build
		}
		fmt.Fprintf(out, "  verifier: %s%s\n", *ar.VerifierID.Developer, b)
	}
	if ar.IssuedAt != nil {
		fmt.Fprintf(out, "  issued:   %s\n", time.Unix(*ar.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	if ar.Nonce != nil {
		fmt.Fprintf(out, "  nonce:    %s\n", *ar.Nonce)
	}
	for name, ap := range ar.Submods {
		st := "none"
		if ap.Status != nil {
			st = ap.Status.String()
		}
		fmt.Fprintf(out, "  %s: %s\n", name, st)
		if ap.TrustVector != nil {
			for _, l := range strings.Split(strings.TrimSpace(ap.TrustVector.Report(true, false)), "\n") {
				fmt.Fprintf(out, "    %s\n", strings.TrimSpace(l))
			}
		}
	}
}

// worstStatus is the status of the worst submodule (an EAR may appraise
// several attesters; RIV's has one).
func worstStatus(ar *ear.AttestationResult) string {
	worst := ear.TrustTierNone
	for _, ap := range ar.Submods {
		if ap.Status != nil && *ap.Status > worst {
			worst = *ap.Status
		}
	}
	return worst.String()
}
