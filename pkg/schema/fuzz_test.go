package schema_test

import (
	"testing"

	"github.com/openriv/riv/pkg/schema"
)

// FuzzInput feeds untrusted operation elements through the XML parser
// and the input validator: any bytes give an element tree or an error,
// and any tree gives an input or an rpc-error, never a panic or a hang.
func FuzzInput(f *testing.F) {
	for _, c := range inputCases {
		f.Add([]byte(c.op))
	}
	f.Add([]byte(`<a xmlns="x"><b xmlns:p="y"><p:c p:d="1">t</p:c></b></a>`))
	s := agentSet(f)
	opx, _ := schema.ParseXML([]byte(oper), schema.Limits{})
	data, _ := s.Data([]*schema.XML{opx})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := schema.ParseXML(b, schema.Limits{Depth: 32, Elements: 4096})
		if err != nil {
			return
		}
		rpc := s.FindRPC(x.NS, x.Name)
		if rpc == nil {
			return
		}
		s.Input(rpc, x, func() []*schema.Elem { return data })
	})
}

// FuzzJSONInput feeds untrusted RFC 7951 JSON input to an RPC: it becomes
// well-formed XML for the operation, or an error.
func FuzzJSONInput(f *testing.F) {
	f.Add([]byte(`{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[0,1]}]}}}`))
	f.Add([]byte(`{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"name":["a<b"],"log-entry-quantity":3,"last-index-number":"7"}]}}`))
	f.Add([]byte(`{"ietf-tpm-remote-attestation:input":{"log-type":"x","log-type":"y"}}`))
	s := agentSet(f)
	rpcs := []*schema.Node{s.FindRPC(nsTPM, "tpm20-challenge-response-attestation"), s.FindRPC(nsTPM, "log-retrieval")}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, rpc := range rpcs {
			op, err := s.JSONInput(rpc, b)
			if err != nil || op == "" {
				continue
			}
			x, perr := schema.ParseXML([]byte(op), schema.Limits{})
			if perr != nil {
				t.Fatalf("JSON %q became malformed XML %q: %v", b, op, perr)
			}
			s.Input(rpc, x, nil)
		}
	})
}
