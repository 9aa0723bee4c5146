package netconf

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// replyBody renders n netequip entries as the agent does.
func replyBody(n int) ([]byte, []eventlog.Event) {
	var b strings.Builder
	var evs []eventlog.Event
	b.WriteString(`<system-event-logs xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><node-data><name>tpm0</name><up-time>42</up-time><log-result><boot-event-logs>`)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("/usr/lib/riv/module-%04d.so", i)
		e := eventlog.IMAEntryFor(10, alg.SHA256, alg.SHA256.Sum([]byte(name)), name, nil, []alg.ID{alg.SHA1})
		e.Seq = i
		evs = append(evs, e)
		fmt.Fprintf(&b, `<boot-event-entry><event-number>%d</event-number><ima-template>ima-ng</ima-template><filename-hint>%s</filename-hint><filedata-hash>%s</filedata-hash><filedata-hash-algorithm>sha256</filedata-hash-algorithm><template-hash-algorithm>sha1</template-hash-algorithm><template-hash>%s</template-hash><pcr-index>10</pcr-index></boot-event-entry>`,
			i, name, base64.StdEncoding.EncodeToString(e.IMA.FileHash), base64.StdEncoding.EncodeToString(e.Digests[0].Value))
	}
	b.WriteString(`</boot-event-logs></log-result></node-data></system-event-logs>`)
	return []byte(b.String()), evs
}

func TestDecodeLogsRebuildsTemplates(t *testing.T) {
	body, want := replyBody(20)
	l, up, err := DecodeLogs(body, "netequip_boot")
	if err != nil {
		t.Fatal(err)
	}
	if up != 42 || len(l.Events) != 20 || l.Banks[0] != alg.SHA1 {
		t.Fatalf("decoded up-time %d, %d events, banks %v", up, len(l.Events), l.Banks)
	}
	for i := range want {
		if diff := cmp.Diff(want[i].Data, l.Events[i].Data); diff != "" {
			t.Fatalf("entry %d template data (-want +got):\n%s", i, diff)
		}
	}
	if n := l.CheckDigests(); n != 0 {
		t.Errorf("%d rebuilt templates do not hash to their template-hash", n)
	}
	for _, bad := range []string{"<system-event-logs><node-data><log-result><boot-event-logs><boot-event-entry><event-number>x</event-number></boot-event-entry>", "<<<", "<a>" + strings.Repeat("<b>", 10)} {
		if _, _, err := DecodeLogs([]byte(bad), "netequip_boot"); err == nil {
			t.Errorf("DecodeLogs(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeLogs(f *testing.F) {
	body, _ := replyBody(3)
	f.Add(body, "netequip_boot")
	f.Add([]byte(`<system-event-logs><node-data><log-result><bios-event-logs><bios-event-entry><event-number>0</event-number><event-type>3</event-type><pcr-index>0</pcr-index><digest-list><hash-algo>taa:TPM_ALG_SHA256</hash-algo><digest>AA==</digest></digest-list></bios-event-entry></bios-event-logs></log-result></node-data></system-event-logs>`), "bios")
	f.Fuzz(func(t *testing.T, b []byte, typ string) {
		l, _, err := DecodeLogs(b, typ)
		if err == nil {
			l.Replay(eventlog.ReplayOptions{})
		}
	})
}

// BenchmarkDecodeLogs compares the streaming decoder with encoding/xml's
// Unmarshal into structs for a 1,000-entry log-retrieval reply (target:
// at most 1.5 µs per entry).
func BenchmarkDecodeLogs(b *testing.B) {
	body, _ := replyBody(1000)
	b.Run("streaming", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := DecodeLogs(body, "netequip_boot"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/entry")
	})
	b.Run("encoding-xml-unmarshal", func(b *testing.B) {
		type entry struct {
			N   uint64 `xml:"event-number"`
			T   string `xml:"ima-template"`
			F   string `xml:"filename-hint"`
			H   string `xml:"filedata-hash"`
			HA  string `xml:"filedata-hash-algorithm"`
			TA  string `xml:"template-hash-algorithm"`
			TH  string `xml:"template-hash"`
			PCR int    `xml:"pcr-index"`
			Sig string `xml:"signature"`
		}
		var v struct {
			E []entry `xml:"node-data>log-result>boot-event-logs>boot-event-entry"`
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := xml.Unmarshal(body, &v); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/entry")
	})
}

// FuzzDecodeB64: where the one-pass decoder decides, it decides as
// encoding/base64 does.
func FuzzDecodeB64(f *testing.F) {
	for _, s := range []string{"", "AA==", "AAA=", "AAAA", "q83vASNFZ4k=", "a=b=", "AA=A", "A===", "AAAAA===", "AB\nCD==", "////", "-_-_"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		n, ok := decodeB64(dst, src)
		if !ok {
			return
		}
		want, err := base64.StdEncoding.DecodeString(string(src))
		if err != nil || string(want) != string(dst[:n]) {
			t.Fatalf("decodeB64(%q) = %x, encoding/base64: %x, %v", src, dst[:n], want, err)
		}
	})
}

// FuzzFastEntries: an entry in the agent's canonical form is decoded by
// fastIMA, anything else by the general scanner; both must agree on
// every input, entry by entry, and on whether it is an error.
func FuzzFastEntries(f *testing.F) {
	body, _ := replyBody(3)
	f.Add(body)
	entry := `<boot-event-entry><event-number>7</event-number><ima-template>ima-sig</ima-template><filename-hint>/a b</filename-hint><filedata-hash>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</filedata-hash><filedata-hash-algorithm>sha256</filedata-hash-algorithm><template-hash-algorithm>sha1</template-hash-algorithm><template-hash>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</template-hash><pcr-index>10</pcr-index><signature>AwI=</signature></boot-event-entry>`
	for _, e := range []string{
		entry,
		strings.Replace(entry, "/a b", "/a&amp;b", 1),
		strings.Replace(entry, "<pcr-index>10", "<pcr-index> 10", 1),
		strings.Replace(entry, "<pcr-index>10", "<pcr-index>40", 1),
		strings.Replace(entry, "sha1<", "md5<", 1),
		strings.Replace(entry, "<signature>AwI=</signature>", "", 1),
		strings.Replace(entry, "<filename-hint>/a b</filename-hint>", "", 1),
		strings.Replace(entry, "<filedata-hash-algorithm>sha256</filedata-hash-algorithm>", "", 1),
		strings.Replace(entry, "</boot-event-entry>", "<!-- x --></boot-event-entry>", 1),
		strings.Replace(entry, "<event-number>7</event-number>", "<event-number>7</event-number><event-number>8</event-number>", 1),
		`<boot-event-entry/>`,
		strings.Replace(entry, "/a b<", "/a b\u00a0<", 1),
		strings.Replace(entry, "<pcr-index>10", "<pcr-index>\u00a010", 1),
		strings.Replace(entry, "<filename-hint>/a b</filename-hint>", "<boot-event-entry><event-number>9</event-number></boot-event-entry>", 1),
		strings.Replace(entry, "ima-sig", "ima", 1),
	} {
		f.Add([]byte(`<system-event-logs><node-data><log-result><boot-event-logs>` + e + e + `</boot-event-logs></log-result></node-data></system-event-logs>`))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, _, ferr := DecodeLogs(b, "netequip_boot")
		general, _, gerr := (&logDecoder{s: &scanner{b: b}, general: true}).decode("netequip_boot")
		if (ferr == nil) != (gerr == nil) {
			t.Fatalf("fast path: %v; general path: %v", ferr, gerr)
		}
		if diff := cmp.Diff(general, fast); diff != "" {
			t.Fatalf("fast path decoded otherwise (-general +fast):\n%s", diff)
		}
	})
}

// TestDecodeLogsAllocs: the agent's canonical entries take the fast path
// and allocate per reply, not per entry (the general path allocates a
// name per entry).
func TestDecodeLogsAllocs(t *testing.T) {
	body, _ := replyBody(1000)
	n := testing.AllocsPerRun(5, func() {
		if _, _, err := DecodeLogs(body, "netequip_boot"); err != nil {
			t.Fatal(err)
		}
	})
	if n > 60 {
		t.Errorf("decoding 1,000 entries allocated %.0f times; want at most 60", n)
	}
}

// TestDecodeLogsStrayLeaves: a bios entry carrying IMA leaves decodes
// (they are skipped, as unknown elements are) instead of crashing the
// collector, and an entry's file name is never an earlier entry's.
func TestDecodeLogsStrayLeaves(t *testing.T) {
	for _, typ := range []string{"bios", "netequip_boot"} {
		body := `<system-event-logs><node-data><log-result><bios-event-logs><bios-event-entry><event-number>0</event-number><event-type>3</event-type><pcr-index>0</pcr-index>` +
			`<ima-template>ima-ng</ima-template><filename-hint>x</filename-hint><filedata-hash>AA==</filedata-hash><filedata-hash-algorithm>sha1</filedata-hash-algorithm>` +
			`<template-hash-algorithm>sha1</template-hash-algorithm><template-hash>AA==</template-hash><signature>AA==</signature>` +
			`<digest-list><hash-algo>taa:TPM_ALG_SHA256</hash-algo><digest>` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `</digest></digest-list></bios-event-entry></bios-event-logs></log-result></node-data></system-event-logs>`
		l, _, err := DecodeLogs([]byte(body), typ)
		if typ == "bios" && (err != nil || len(l.Events) != 1 || l.Events[0].IMA != nil || len(l.Events[0].Digests) != 1 || l.Events[0].Digests[0].Alg != alg.SHA256) {
			t.Errorf("bios entry with IMA leaves: %+v, %v", l, err)
		}
	}
	// The second entry is not in the canonical form (a comment) and has
	// no filename-hint.
	body, _ := replyBody(1)
	one := string(body)
	i, j := strings.Index(one, "<boot-event-entry>"), strings.Index(one, "</boot-event-logs>")
	second := strings.Replace(strings.Replace(one[i:j], "<event-number>0", "<!-- x --><event-number>1", 1), "<filename-hint>/usr/lib/riv/module-0000.so</filename-hint>", "", 1)
	l, _, err := DecodeLogs([]byte(one[:j]+second+one[j:]), "netequip_boot")
	if err != nil || len(l.Events) != 2 {
		t.Fatalf("%v, %v", l, err)
	}
	if got := l.Events[1].IMA.FileName; got != "" {
		t.Errorf("an entry without a filename-hint is named %q", got)
	}
}
