package main

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	cose "github.com/veraison/go-cose"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
)

// loadSigner reads a PEM private key (PKCS#8, EC or PKCS#1) and a PEM
// certificate chain, leaf first.
func loadSigner(keyFile, certFile string) (rim.Signer, error) {
	var s rim.Signer
	signer, err := loadPrivateKey(keyFile)
	if err != nil {
		return s, err
	}
	s.Key = signer
	cb, err := readInput(certFile)
	if err != nil {
		return s, err
	}
	for blk, rest := pem.Decode(cb); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return s, badInput("%s: %v", certFile, err)
		}
		s.Chain = append(s.Chain, c)
	}
	if len(s.Chain) == 0 {
		return s, badInput("%s: no PEM certificates", certFile)
	}
	type eq interface{ Equal(crypto.PublicKey) bool }
	if e, ok := s.Chain[0].PublicKey.(eq); !ok || !e.Equal(signer.Public()) {
		return s, badInput("%s: the first certificate is not for the key in %s", certFile, keyFile)
	}
	return s, nil
}

func cmdRIMSign(kind string) func(*cli.Env, []string) error {
	return func(env *cli.Env, args []string) error { return rimSign(env, kind, args) }
}

func rimSign(env *cli.Env, kind string, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	keyFile := fs.String("key", "", "signing key (PEM)")
	certFile := fs.String("cert", "", "signer certificate chain, leaf first (PEM)")
	output := fs.String("o", "", "output file")
	id := fs.String("tag-id", "", "tag-id / corim-id (UUID)")
	vendor := fs.String("vendor", "", "vendor (tag-creator entity-name)")
	regID := fs.String("reg-id", "", "vendor reg-id (URI)")
	name := fs.String("name", "", "software-name")
	version := fs.String("version", "", "software-version")
	product := fs.String("product", "", "product")
	model := fs.String("model", "", "platform model")
	patches := fs.String("patches", "", "tag-id this patch tag applies to")
	payloadType := fs.String("payload-type", "", "TCG RIM payload type: direct, indirect or hybrid")
	bindingSpec := fs.String("binding-spec", "", "TCG RIM binding-spec-name")
	bindingVer := fs.String("binding-spec-version", "", "TCG RIM binding-spec-version")
	pen := fs.Uint64("manufacturer-id", 0, "platform manufacturer IANA PEN")
	pcrsFile := fs.String("pcrs", "", "PCR reference values (replay JSON), for corim")
	var supersedes cli.Strings
	fs.Var(&supersedes, "supersedes", "tag-id this tag supersedes (repeatable)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *keyFile == "" || *certFile == "" || *output == "" || *id == "" || *vendor == "" {
		return badInput("rim sign %s: --key, --cert, --tag-id, --vendor and -o are required", kind)
	}
	signer, err := loadSigner(*keyFile, *certFile)
	if err != nil {
		return err
	}
	var signed []byte
	if kind == "corim" {
		if *pcrsFile == "" || fs.NArg() != 0 {
			return badInput("rim sign corim: --pcrs is required, and no files")
		}
		raw, err := readInput(*pcrsFile)
		if err != nil {
			return err
		}
		var vals pcr.Values
		if err := json.Unmarshal(raw, &vals); err != nil {
			return badInput("%s: %v", *pcrsFile, err)
		}
		u, err := rim.NewPCRCoRIM(rim.PCRSpec{ID: *id, Vendor: *vendor, VendorRegID: *regID, Model: *model, PCRs: vals})
		if err != nil {
			return badInput("%v", err)
		}
		if signed, err = rim.SignCoRIM(u, signer); err != nil {
			return badInput("%v", err)
		}
	} else {
		spec := rim.TagSpec{TagID: *id, Name: *name, Version: *version, Vendor: *vendor, VendorRegID: *regID,
			Product: *product, Colloquial: *version, Revision: "1", Supersedes: supersedes, Patches: *patches}
		for _, a := range fs.Args() {
			// DEVICE-PATH=LOCAL-FILE records LOCAL-FILE's hashes under the
			// path the device will measure.
			devPath, local, ok := strings.Cut(a, "=")
			if !ok {
				local = devPath
			}
			content, err := readInput(local)
			if err != nil {
				return err
			}
			spec.Files = append(spec.Files, rim.File{Path: devPath, Content: content})
		}
		if *bindingSpec != "" || *payloadType != "" {
			pt := map[string]uint{"direct": rim.PayloadDirect, "indirect": rim.PayloadIndirect, "hybrid": rim.PayloadHybrid, "": rim.PayloadDirect}
			v, ok := pt[*payloadType]
			if !ok {
				return badInput("--payload-type %q: want direct, indirect or hybrid", *payloadType)
			}
			spec.RIM = &rim.ReferenceMeasurement{PayloadType: &v, BindingSpecName: *bindingSpec, BindingSpecVersion: *bindingVer,
				PlatformManufacturerID: *pen, PlatformManufacturerName: *vendor, PlatformModelName: *model, RIMLinkHash: []byte{}}
		}
		tag, err := rim.NewTag(spec)
		if err != nil {
			return badInput("%v", err)
		}
		payload, err := tag.Encode()
		if err != nil {
			return badInput("%v", err)
		}
		if signed, err = rim.SignCOSE(payload, rim.ContentTypeCoSWID, signer, nil); err != nil {
			return badInput("%v", err)
		}
	}
	if err := os.WriteFile(*output, signed, 0o644); err != nil {
		return badInput("%v", err)
	}
	fmt.Fprintf(out, "signed %s %s (%d bytes) with %s\n", kind, *output, len(signed), signer.Chain[0].Subject)
	return nil
}

type rimJSON struct {
	Verified    bool                      `json:"verified"`
	Reason      string                    `json:"reason,omitempty"`
	Kind        string                    `json:"kind,omitempty"`
	Alg         string                    `json:"alg,omitempty"`
	ContentType string                    `json:"content_type,omitempty"`
	Signer      string                    `json:"signer,omitempty"`
	TagID       string                    `json:"tag_id,omitempty"`
	Name        string                    `json:"software_name,omitempty"`
	Version     string                    `json:"software_version,omitempty"`
	Creator     string                    `json:"tag_creator,omitempty"`
	Supersedes  []string                  `json:"supersedes,omitempty"`
	Patches     []string                  `json:"patches,omitempty"`
	Files       []rimFileJSON             `json:"files,omitempty"`
	PCRs        pcr.Values                `json:"pcrs,omitempty"`
	TCG         *rim.ReferenceMeasurement `json:"tcg_rim,omitempty"`
}

type rimFileJSON struct {
	Path string `json:"path"`
	Alg  string `json:"alg"`
	Hash string `json:"hash"`
}

func describe(r *rim.Result) rimJSON {
	j := rimJSON{Kind: string(r.Kind), Alg: r.Signed.Alg.String(), ContentType: r.Signed.ContentType, Supersedes: r.Supersedes, Patches: r.Patches, PCRs: r.PCRs}
	if r.Signed.Signer != nil {
		j.Signer = r.Signed.Signer.Subject.String()
	}
	if t := r.Tag; t != nil {
		j.TagID, j.Name, j.Version, j.TCG = t.TagID.String(), t.SoftwareName, t.SoftwareVersion, t.RIM
		if e := t.TagCreator(); e != nil {
			j.Creator = e.EntityName
		}
		for _, f := range t.Files() {
			j.Files = append(j.Files, rimFileJSON{Path: f.Path, Alg: f.Alg.String(), Hash: hex.EncodeToString(f.Hash)})
		}
	}
	if r.CoRIM != nil {
		j.TagID = r.CoRIM.GetID()
	}
	return j
}

func cmdRIMVerify(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	keyFile := fs.String("key", "", "public key (PEM/DER SPKI, certificate or JWK)")
	anchors := fs.String("anchors", "", "CA certificates (PEM) the x5chain must chain to")
	aadHex := fs.String("external-aad", "", "COSE external AAD (hex)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || (*keyFile == "") == (*anchors == "") {
		return badInput("rim verify: want one FILE and exactly one of --key or --anchors")
	}
	var o rim.VerifyOptions
	if *keyFile != "" {
		b, err := readInput(*keyFile)
		if err != nil {
			return err
		}
		if o.Key, err = rim.ParsePublicKey(b); err != nil {
			return badInput("%s: %v", *keyFile, err)
		}
	} else {
		b, err := readInput(*anchors)
		if err != nil {
			return err
		}
		o.Roots = x509.NewCertPool()
		if !o.Roots.AppendCertsFromPEM(b) {
			return badInput("%s: no PEM certificates", *anchors)
		}
	}
	var err error
	if o.ExternalAAD, err = hex.DecodeString(*aadHex); err != nil {
		return badInput("--external-aad: %v", err)
	}
	raw, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	r, err := rim.Verify(raw, o)
	if err != nil {
		if rim.IsVerificationError(err) {
			if *asJSON {
				b, _ := json.MarshalIndent(rimJSON{Reason: err.Error()}, "", "  ")
				fmt.Fprintf(out, "%s\n", b)
			}
			return cli.Failed("%v", err)
		}
		return badInput("%s: %v", fs.Arg(0), err)
	}
	j := describe(r)
	j.Verified = true
	if *asJSON {
		b, _ := json.MarshalIndent(j, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return nil
	}
	fmt.Fprintf(out, "verified %s (%s) signed by %s\n", j.Kind, j.Alg, orKey(j.Signer))
	printRIM(out, j)
	return nil
}

func orKey(s string) string {
	if s == "" {
		return "the given key"
	}
	return s
}

func printRIM(out io.Writer, j rimJSON) {
	switch {
	case j.Name != "":
		fmt.Fprintf(out, "  tag-id %s  %s %s  tag-creator %q\n", j.TagID, j.Name, j.Version, j.Creator)
	case j.TagID != "":
		fmt.Fprintf(out, "  id %s\n", j.TagID)
	}
	for _, s := range j.Supersedes {
		fmt.Fprintf(out, "  supersedes %s\n", s)
	}
	for _, s := range j.Patches {
		fmt.Fprintf(out, "  patches %s\n", s)
	}
	for _, f := range j.Files {
		fmt.Fprintf(out, "  %s %s:%s\n", f.Path, f.Alg, f.Hash)
	}
	if j.TCG != nil {
		fmt.Fprintf(out, "  TCG RIM: binding %s %s, platform %s %s\n", j.TCG.BindingSpecName, j.TCG.BindingSpecVersion, j.TCG.PlatformManufacturerName, j.TCG.PlatformModelName)
	}
	if len(j.PCRs) > 0 {
		printValues(out, j.PCRs)
	}
}

// cmdRIMShow decodes without verifying: everything it prints is untrusted.
func cmdRIMShow(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	asJSON := fs.Bool("json", false, "print JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("rim show: want one FILE")
	}
	raw, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	j := rimJSON{}
	payload := raw
	if msg, err := rim.DecodeCOSE(raw); err == nil {
		if a, err := msg.Headers.Protected.Algorithm(); err == nil {
			j.Alg = a.String()
		}
		j.ContentType, _ = msg.Headers.Protected[cose.HeaderLabelContentType].(string)
		payload = msg.Payload
		j.Kind = "cose"
	}
	if t, err := rim.DecodeTag(payload); err == nil {
		r := &rim.Result{Kind: rim.KindCoSWID, Tag: t, Signed: &rim.Signed{ContentType: j.ContentType}}
		r.Supersedes, _ = t.LinkedTags("supersedes")
		r.Patches, _ = t.LinkedTags("patches")
		d := describe(r)
		d.Alg, d.Kind = j.Alg, "coswid"
		j = d
	} else if c, vals, err := rim.DecodeCoRIM(payload); err == nil {
		j.Kind, j.TagID, j.PCRs = "corim", c.GetID(), vals
	} else if j.Kind == "" {
		return badInput("%s: not a COSE_Sign1, CoSWID or CoRIM", fs.Arg(0))
	}
	if *asJSON {
		b, _ := json.MarshalIndent(j, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return nil
	}
	fmt.Fprintf(out, "%s (UNVERIFIED) alg %s content-type %q\n", j.Kind, j.Alg, j.ContentType)
	printRIM(out, j)
	return nil
}

// loadPrivateKey reads a PEM private key: PKCS#8, SEC1 (EC) or PKCS#1.
func loadPrivateKey(keyFile string) (crypto.Signer, error) {
	kb, err := readInput(keyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, badInput("%s: no PEM key", keyFile)
	}
	var k any
	if k, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		if k, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
			if k, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
				return nil, badInput("%s: not a PKCS#8, EC or PKCS#1 private key", keyFile)
			}
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, badInput("%s: not a signing key", keyFile)
	}
	return signer, nil
}
