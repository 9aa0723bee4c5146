package netconf_test

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nc "github.com/nemith/netconf"
	ncssh "github.com/nemith/netconf/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/yang"
)

const invNS = `xmlns="urn:openriv:params:xml:ns:yang:riv-software-inventory"`

// invFixture is a NETCONF server of a simulated device's attester that
// also serves a software inventory: the RIMs the vendor signed for the
// device's image, laid out as the NOS installs them.
type invFixture struct {
	d     *device.Device
	v     *vendor.Vendor
	flat  string // the vendor's published files
	dir   string // the inventory
	store *inventory.Store
	srv   *netconf.Server
}

func startInventory(t testing.TB) *invFixture {
	t.Helper()
	f := &invFixture{d: device.StartT(t, device.Options{}), flat: t.TempDir(), dir: t.TempDir()}
	now := time.Now()
	var err error
	if f.v, err = vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	img := router.DefaultImage("2.0")
	rims, err := f.v.Sign(img, f.d.Boot)
	if err != nil {
		t.Fatal(err)
	}
	// Laid out as vendor.Publish lays them out.
	if err := rims.Write(f.flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	if err := inventory.InstallFlat(f.dir, f.flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	if f.store, err = inventory.Open(f.dir, inventory.Limits{}); err != nil {
		t.Fatal(err)
	}
	f.srv, err = netconf.New(netconf.Config{Attester: f.d.Attester, Inventory: f.store.Current,
		NACM: netconf.NACM{Groups: map[string][]string{"verifiers": {f.d.User}}, Rules: []netconf.Rule{{Group: "verifiers", Operation: "*", Action: "permit"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *invFixture) exchange(op string) (rpc, reply string) {
	rpc = `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="3">` + op + `</rpc>`
	return rpc, string(f.srv.Exchange(context.Background(), f.d.User, []byte(rpc)))
}

// invReply is the software inventory of a <get> reply.
type invReply struct {
	Components []struct {
		TagID  string `xml:"tag-id"`
		Name   string `xml:"software-name"`
		Scheme string `xml:"version-scheme"`
		RIMs   []struct {
			Digest    string `xml:"digest"`
			MediaType string `xml:"media-type"`
			Size      int    `xml:"size"`
			FileName  string `xml:"file-name"`
			Content   string `xml:"content"`
		} `xml:"rim"`
	} `xml:"data>software-inventory>component"`
}

func parseInv(t *testing.T, reply string) invReply {
	t.Helper()
	var r invReply
	if err := xml.Unmarshal([]byte(reply), &r); err != nil {
		t.Fatalf("reply: %v\n%.500s", err, reply)
	}
	return r
}

func summaryFilter() string {
	return `<get><filter type="subtree"><software-inventory ` + invNS + `><component><tag-id/><rim><digest/><media-type/><size/><file-name/></rim></component></software-inventory></filter></get>`
}

func rimsOf(tagID string) string {
	return `<get><filter type="subtree"><software-inventory ` + invNS + `><component><tag-id>` + tagID + `</tag-id><rim/></component></software-inventory></filter></get>`
}

// TestInventoryRepliesValidate has yanglint validate what the agent sends
// of its software inventory against riv-software-inventory: the whole
// operational datastore with the inventory, the summary a verifier polls
// (tag-ids and RIM digests, no content), one component's RIMs fetched by
// tag-id, one RIM by tag-id and digest, and an unknown tag-id (an empty
// <data></data>).
func TestInventoryRepliesValidate(t *testing.T) {
	f := startInventory(t)
	dir := t.TempDir()
	lint := func(args ...string) {
		t.Helper()
		if out, err := yanglintSchema(t, f.srv.Schema(), args...); err != nil {
			t.Errorf("yanglint %v: %v\n%s", args, err, out)
		}
	}
	_, get := f.exchange(`<get/>`)
	if !strings.Contains(get, `<software-inventory xmlns="urn:openriv:params:xml:ns:yang:riv-software-inventory">`) {
		t.Fatalf("<get> lacks the inventory:\n%.800s", get)
	}
	oper := filepath.Join(dir, "oper.xml")
	os.WriteFile(oper, dataOf(t, []byte(get)), 0o600)
	lint("-t", "data", oper)

	platform := f.v.TagID("base", "rtr-1000", "2.0")
	supportDigest := sha256.Sum256(f.d.Boot.UEFILog)
	cases := []struct {
		name, op string
		want     string
		data     string // yanglint's data type for the retrieved data
	}{
		{"summary", summaryFilter(), "<digest>", "get"},
		{"rims by tag-id", rimsOf(platform), "<content>", "get"},
		{"one rim", `<get><filter type="subtree"><software-inventory ` + invNS + `><component><tag-id>` + platform + `</tag-id><rim><digest>` +
			hex.EncodeToString(supportDigest[:]) + `</digest></rim></component></software-inventory></filter></get>`, "<content>", "get"},
		{"unknown tag-id", rimsOf("00000000-0000-0000-0000-000000000000"), "<data></data>", ""},
		// The collector asks for every component it lacks in one filter.
		{"rims of two components", `<get><filter type="subtree"><software-inventory ` + invNS + `><component><tag-id>` + platform + `</tag-id><rim/></component><component><tag-id>` +
			f.v.TagID("package", "rtr-1000/frr", "9.1") + `</tag-id><rim/></component></software-inventory></filter></get>`, "pkg-frr-2.0.cose", "get"},
		{"get-data nonconfig", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><subtree-filter><software-inventory ` + invNS + `/></subtree-filter><config-filter>false</config-filter></get-data>`, "<payload>", "get"},
		{"get-schema", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>riv-software-inventory</identifier></get-schema>`, "module riv-software-inventory", ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rpc, reply := f.exchange(c.op)
			if !strings.Contains(reply, c.want) {
				t.Fatalf("reply lacks %q:\n%.1500s", c.want, reply)
			}
			rf, pf := filepath.Join(dir, fmt.Sprintf("rpc%d.xml", i)), filepath.Join(dir, fmt.Sprintf("reply%d.xml", i))
			os.WriteFile(rf, []byte(rpc), 0o600)
			os.WriteFile(pf, []byte(reply), 0o600)
			lint("-t", "nc-reply", "-R", rf, "-O", oper, pf)
			if c.data != "" {
				df := filepath.Join(dir, fmt.Sprintf("data%d.xml", i))
				os.WriteFile(df, dataOf(t, []byte(reply)), 0o600)
				lint("-t", c.data, df)
			}
		})
	}
	// The configuration datastores have none of it: it is state.
	if _, r := f.exchange(`<get-config><source><running/></source></get-config>`); strings.Contains(r, "software-inventory") {
		t.Errorf("get-config holds the inventory:\n%.500s", r)
	}
}

// TestInventoryRIMsByTagID is the verifier's path: list the summary, then
// fetch one component's RIMs by tag-id. The summary carries no content;
// the fetched bytes are the vendor's files byte for byte, the signed ones
// verify against the vendor CA, and the support RIM is the one the
// signed base RIM lists, found by the digest the inventory keys it with.
func TestInventoryRIMsByTagID(t *testing.T) {
	f := startInventory(t)
	_, reply := f.exchange(summaryFilter())
	if strings.Contains(reply, "<content>") || strings.Contains(reply, "<software-name>") {
		t.Errorf("the summary carries more than tag-ids and RIM metadata:\n%.800s", reply)
	}
	sum := parseInv(t, reply)
	if len(sum.Components) != 6 {
		t.Fatalf("summary lists %d components, want 6", len(sum.Components))
	}
	roots := f.v.Roots()
	for _, c := range sum.Components {
		_, reply := f.exchange(rimsOf(c.TagID))
		got := parseInv(t, reply)
		if len(got.Components) != 1 || got.Components[0].TagID != c.TagID || len(got.Components[0].RIMs) != len(c.RIMs) {
			t.Fatalf("RIMs of %s: %+v", c.TagID, got.Components)
		}
		var base *rim.Tag
		var support []byte
		var supportDigest string
		for i, r := range got.Components[0].RIMs {
			b, err := base64.StdEncoding.DecodeString(r.Content)
			if err != nil {
				t.Fatal(err)
			}
			file, err := os.ReadFile(filepath.Join(f.flat, r.FileName))
			if err != nil || string(file) != string(b) {
				t.Errorf("%s/%s: the served RIM is not the vendor's file (%v)", c.TagID, r.FileName, err)
			}
			d := sha256.Sum256(b)
			if hex.EncodeToString(d[:]) != r.Digest || r.Digest != c.RIMs[i].Digest || r.Size != len(b) {
				t.Errorf("%s/%s: digest %s, size %d; the bytes hash to %x, %d long", c.TagID, r.FileName, r.Digest, r.Size, d, len(b))
			}
			if r.MediaType == inventory.MediaSupport {
				support, supportDigest = b, r.Digest
				continue
			}
			res, err := rim.Verify(b, rim.VerifyOptions{Roots: roots})
			if err != nil {
				t.Errorf("%s/%s: rim.Verify = %v", c.TagID, r.FileName, err)
				continue
			}
			if res.Kind == rim.KindCoSWID {
				if res.Tag.TagID.String() != c.TagID {
					t.Errorf("served under %s, the signed tag is %s", c.TagID, res.Tag.TagID.String())
				}
				if res.Tag.RIM != nil {
					base = res.Tag
				}
			}
		}
		if support == nil {
			continue
		}
		if base == nil {
			t.Fatalf("%s has a support RIM but no base RIM", c.TagID)
		}
		path := ""
		for _, fh := range base.Files() {
			if fh.Alg == alg.SHA256 && hex.EncodeToString(fh.Hash) == supportDigest {
				path = fh.Path
			}
		}
		if err := base.SupportRIMMatches(path, support); path == "" || err != nil {
			t.Errorf("the base RIM does not list the support RIM %s (path %q): %v", supportDigest, path, err)
		}
	}
	if _, r := f.exchange(rimsOf("no-such-tag")); !strings.Contains(r, "<data></data>") {
		t.Errorf("unknown tag-id: %.300s", r)
	}
}

// TestInventoryLibrary: the YANG library lists riv-software-inventory as
// implemented by an agent that serves an inventory (and not by one that
// does not), and <get-schema> returns its text as embedded.
func TestInventoryLibrary(t *testing.T) {
	f := startInventory(t)
	for _, c := range []struct {
		srv  *netconf.Server
		want bool
	}{{f.srv, true}, {f.d.Server, false}} {
		reply := string(c.srv.Exchange(context.Background(), f.d.User, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get><filter type="subtree"><yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"/></filter></get></rpc>`)))
		var r struct {
			Impl []libModule `xml:"data>yang-library>module-set>module"`
		}
		if err := xml.Unmarshal([]byte(reply), &r); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range r.Impl {
			if m.Name == "riv-software-inventory" {
				found = m.Revision == "2026-12-01" && m.NS == netconf.NSSoftwareInventory
			}
		}
		if found != c.want {
			t.Errorf("library lists riv-software-inventory@2026-12-01: %v, want %v", found, c.want)
		}
	}
	_, reply := f.exchange(`<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>riv-software-inventory</identifier><version>2026-12-01</version></get-schema>`)
	var r struct {
		Data string `xml:"data"`
	}
	xml.Unmarshal([]byte(reply), &r)
	if m, ok := yang.Find("riv-software-inventory", "2026-12-01"); !ok || r.Data != m.Text {
		t.Errorf("get-schema riv-software-inventory: %d bytes, not the embedded %d", len(r.Data), len(m.Text))
	}
}

// TestInventoryReload: an open NETCONF session sees a reloaded inventory
// at its next request; the schema, and so the library's content-id, stay.
func TestInventoryReload(t *testing.T) {
	f := startInventory(t)
	_, host, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(f.d.SSHClientKey.Public())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.srv.ServeSSH(ctx, ln, netconf.SSHConfig{HostKey: host, AuthorizedKeys: map[string][]ssh.PublicKey{f.d.User: {pub}}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	signer, _ := ssh.NewSignerFromKey(f.d.SSHClientKey)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	tr, err := ncssh.Dial(dctx, "tcp", ln.Addr().String(), &ssh.ClientConfig{User: f.d.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := nc.Open(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	count := func() int {
		t.Helper()
		r, err := do(t, s, summaryFilter())
		if err != nil {
			t.Fatal(err)
		}
		return len(parseInv(t, `<rpc-reply>`+string(r.Body)+`</rpc-reply>`).Components)
	}
	before := count()
	id := f.srv.Modified()

	tag, err := rim.NewTag(rim.TagSpec{TagID: f.v.TagID("package", "bird", "2.15"), Name: "bird", Version: "2.15", Vendor: f.v.Name, VendorRegID: f.v.RegID,
		Files: []rim.File{{Path: "/usr/sbin/bird", Content: []byte("bird")}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tag.Encode()
	signed, err := rim.SignCOSE(p, rim.ContentTypeCoSWID, f.v.Signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := inventory.Install(f.dir, "bird", map[string][]byte{"bird.cose": signed}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != before {
		t.Errorf("the session sees %d components before the reload, want %d", got, before)
	}
	if err := f.store.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != before+1 {
		t.Errorf("the session sees %d components after the reload, want %d", got, before+1)
	}
	if !f.srv.Modified().After(id) {
		t.Error("Modified did not move with the reload")
	}
}

// BenchmarkInventoryFetch: what a verifier's fetch of one component's RIMs
// by tag-id costs the agent, against a <get> of the whole inventory in
// the same run (the baseline a filterless client pays), and the summary.
func BenchmarkInventoryFetch(b *testing.B) {
	f := startInventory(b)
	ctx := context.Background()
	whole := []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get><filter type="subtree"><software-inventory ` + invNS + `/></filter></get></rpc>`)
	one := []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1">` + rimsOf(f.v.TagID("package", "rtr-1000/frr", "9.1")) + `</rpc>`)
	sum := []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1">` + summaryFilter() + `</rpc>`)
	var tWhole, tOne, tSum time.Duration
	var bytesWhole, bytesOne int
	n := 0
	for b.Loop() {
		n++
		t0 := time.Now()
		r := f.srv.Exchange(ctx, f.d.User, whole)
		t1 := time.Now()
		r1 := f.srv.Exchange(ctx, f.d.User, one)
		t2 := time.Now()
		f.srv.Exchange(ctx, f.d.User, sum)
		t3 := time.Now()
		tWhole, tOne, tSum = tWhole+t1.Sub(t0), tOne+t2.Sub(t1), tSum+t3.Sub(t2)
		bytesWhole, bytesOne = len(r), len(r1)
	}
	d := time.Duration(n)
	b.ReportMetric(float64(tWhole/d)/1e3, "µs-whole")
	b.ReportMetric(float64(tOne/d)/1e3, "µs-one-component")
	b.ReportMetric(float64(tSum/d)/1e3, "µs-summary")
	b.ReportMetric(float64(tOne)/float64(tWhole), "one/whole")
	b.ReportMetric(float64(bytesOne)/float64(bytesWhole), "bytes-one/whole")
}
