package netconf

import (
	"testing"
)

func TestParseReply(t *testing.T) {
	ok := `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"><data/></rpc-reply>`
	cases := []struct {
		name, msg string
		want      string
		err       bool
	}{
		{"plain", ok, "<data/>", false},
		{"declaration and spaces", "<?xml version=\"1.0\"?>\n" + ok + "\n", "<data/>", false},
		{"prefixed", `<nc:rpc-reply xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" message-id='7'><nc:ok/></nc:rpc-reply>`, "<nc:ok/>", false},
		{"empty element", `<rpc-reply message-id="7" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>`, "", false},
		{"attribute with >", `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" x="a>b" message-id="7"><data/></rpc-reply>`, "<data/>", false},
		{"wrong message-id", `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="8"><data/></rpc-reply>`, "", true},
		{"no message-id", `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><data/></rpc-reply>`, "", true},
		{"wrong namespace", `<rpc-reply xmlns="urn:example" message-id="7"><data/></rpc-reply>`, "", true},
		{"not a reply", `<notification xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"/>`, "", true},
		{"truncated", ok[:len(ok)-5], "", true},
		{"unterminated tag", `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"`, "", true},
		{"duplicate attribute", `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7" message-id="7"/>`, "", true},
		{"garbage", "]]>]]>", "", true},
		{"empty", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseReply([]byte(c.msg), 7)
			if (err != nil) != c.err || string(got) != c.want {
				t.Errorf("parseReply() = %q, %v; want %q, error %v", got, err, c.want, c.err)
			}
		})
	}
}

// FuzzParseReply: the reply envelope comes from the device.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><ok/></rpc-reply>`))
	f.Add([]byte(`<?xml version="1.0"?><!-- c --><nc:rpc-reply xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" message-id='1' a="&amp;"/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := parseReply(b, 1)
		if err == nil && len(body) > len(b) {
			t.Fatalf("body longer than the message")
		}
		if err == nil {
			isRPCError(body) // must not panic or hang
		}
	})
}

func TestIsRPCError(t *testing.T) {
	for _, c := range []struct {
		inner string
		want  bool
	}{
		{`<ok/>`, false},
		{``, false},
		{`<rpc-error><error-type>rpc</error-type></rpc-error>`, true},
		{"<!-- why -->\n  <nc:rpc-error xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\"/>", true},
		{`<data/><rpc-error><error-tag>partial-operation</error-tag></rpc-error>  `, true},
		// An entry's text that mentions rpc-error is not one.
		{`<data><log>rpc-error seen</log></data>`, false},
		{`<data><rpc-errors/></data>`, false},
	} {
		if got := isRPCError([]byte(c.inner)); got != c.want {
			t.Errorf("isRPCError(%q) = %v, want %v", c.inner, got, c.want)
		}
	}
}
