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
