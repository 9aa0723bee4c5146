package restconf

import (
	"bytes"
	"strings"
	"testing"
)

// The request parts a client controls: the data path, and an RPC input in
// JSON or XML. Each must give a value or an error, never a panic; and
// what is accepted must be well-formed XML for the NETCONF server.

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"", "ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=tpm0",
		"ietf-keystore:keystore/asymmetric-keys/asymmetric-key=a%2Fb", "ietf-yang-library:yang-library/module-set=riv/module=x",
		"a:b", "ietf-tpm-remote-attestation:rats-support-structures/tpms/tpm=%zz", strings.Repeat("x/", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := parsePath(p)
		if err == nil && len(segs) > 0 {
			if segs[0].module == "" {
				t.Fatalf("parsePath(%q): first segment without module", p)
			}
			if _, err := parseXML([]byte(topFilter(segs))); err != nil {
				t.Fatalf("filter for %q is not XML: %v", p, err)
			}
		}
	})
}

func FuzzInput(f *testing.F) {
	f.Add([]byte(`{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[0,1]}]}}}`), true)
	f.Add([]byte(`{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"name":["a<b"],"log-entry-quantity":3}]}}`), true)
	f.Add([]byte(`<input xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation" xmlns:tpm="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>tpm:ima</log-type></input>`), false)
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><input>&a;</input>`), false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		children, decls, err := inputXML(body, isJSON, "ietf-tpm-remote-attestation")
		if err != nil {
			return
		}
		var b bytes.Buffer
		b.WriteString(`<op xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"`)
		for _, a := range decls {
			b.WriteString(" xmlns:" + a.Name.Local + `="` + escape(a.Value) + `"`)
		}
		b.WriteString(">" + children + "</op>")
		if _, err := parseXML(b.Bytes()); err != nil {
			t.Fatalf("accepted input %q became malformed XML %q: %v", body, b.String(), err)
		}
	})
}
