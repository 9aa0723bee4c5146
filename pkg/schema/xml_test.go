package schema

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestXMLNamespaceBlowup: 5000 prefixes on the root and 5000 elements that
// each declare one more used to copy the whole scope into every element
// (1.5 GiB for 149 KB); each element keeps only its own declarations now,
// so memory and time stay linear, and re-encoding stays cheap.
func TestXMLNamespaceBlowup(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"`)
	for i := range 5000 {
		fmt.Fprintf(&b, ` xmlns:p%d="urn:x:%d"`, i, i)
	}
	b.WriteString(">")
	for range 5000 {
		b.WriteString(`<a xmlns:q="urn:q"/>`)
	}
	b.WriteString("</rpc>")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	x, err := ParseXML([]byte(b.String()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, c := range x.Children {
		c.Encode(&out, x.NS, false)
	}
	x.Encode(&out, "", true)
	runtime.ReadMemStats(&after)
	if took, alloc := time.Since(start), after.TotalAlloc-before.TotalAlloc; took > 2*time.Second || alloc > 64<<20 {
		t.Errorf("%d bytes: %v and %d MiB allocated", b.Len(), took, alloc>>20)
	}
	if ns, ok := x.Children[4999].Resolve("p4999"); !ok || ns != "urn:x:4999" {
		t.Errorf("p4999 resolves to %q %v below the root", ns, ok)
	}
}

// TestXMLWellFormedness: an attribute twice on an element is not
// well-formed (XML 1.0 §3.1; Namespaces in XML §6.3 for two prefixes of
// one namespace), nor is a prefix declared twice; the xml prefix needs no
// declaration and is written back as xml:.
func TestXMLWellFormedness(t *testing.T) {
	for _, doc := range []string{
		`<a x="1" x="2"/>`,
		`<a xmlns:p="urn:p" xmlns:q="urn:p" p:x="1" q:x="2"/>`,
		`<a xmlns:p="urn:p" xmlns:p="urn:q"/>`,
		`<a xmlns:xml="urn:nope"/>`,
	} {
		if _, err := ParseXML([]byte(doc), Limits{}); err == nil {
			t.Errorf("%s accepted", doc)
		}
	}
	x, err := ParseXML([]byte(`<a xml:lang="en" xmlns:p="urn:p"><b p:c="1"/></a>`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	x.Encode(&out, "", true)
	if got := out.String(); got != `<a xmlns:p="urn:p" xml:lang="en"><b p:c="1"></b></a>` {
		t.Errorf("re-encoded as %s", got)
	}
}

// TestHugeNumbers: a megabyte of digits is out of range at once, not
// after a quadratic big-number parse, and the error does not echo it.
func TestHugeNumbers(t *testing.T) {
	for _, kind := range []string{"uint16", "int64", "decimal64"} {
		ty := &Type{Kind: kind, FractionDigits: 2}
		v := strings.Repeat("9", 1<<20)
		start := time.Now()
		_, err := ty.Check(nil, v, nil)
		if err == nil || time.Since(start) > 100*time.Millisecond || len(err.Error()) > 200 {
			t.Errorf("%s: %v after %v (%d bytes of message)", kind, err != nil, time.Since(start), len(fmt.Sprint(err)))
		}
		if _, err := ty.Check(nil, strings.Repeat("0", 1<<20)+"7", nil); err != nil {
			t.Errorf("%s: 7 with a megabyte of leading zeros: %v", kind, err)
		}
	}
}
