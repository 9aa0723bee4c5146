package restconf_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/restconf"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/pkg/rim"
)

// invServer is a RESTCONF server on a NETCONF server of a simulated
// device's attester that also serves the software inventory the device's
// vendor signed.
type invServer struct {
	d     *device.Device
	v     *vendor.Vendor
	flat  string
	dir   string // the inventory
	store *inventory.Store
	nc    *netconf.Server
	addr  string
	c     *http.Client
}

func startInventoryServer(t *testing.T) *invServer {
	t.Helper()
	s := &invServer{d: startDevice(t), flat: t.TempDir()}
	now := time.Now()
	var err error
	if s.v, err = vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rims, err := s.v.Sign(router.DefaultImage("2.0"), s.d.Boot)
	if err != nil {
		t.Fatal(err)
	}
	// Laid out as vendor.Publish lays them out.
	if err := rims.Write(s.flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	s.dir = t.TempDir()
	if err := inventory.InstallFlat(s.dir, s.flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	if s.store, err = inventory.Open(s.dir, inventory.Limits{}); err != nil {
		t.Fatal(err)
	}
	s.nc, err = netconf.New(netconf.Config{Attester: s.d.Attester, Inventory: s.store.Current, RESTCONF: restconf.Capabilities,
		NACM: netconf.NACM{Groups: map[string][]string{"verifiers": {s.d.User}}, Rules: []netconf.Rule{{Group: "verifiers", Operation: "*", Action: "permit"}}}})
	if err != nil {
		t.Fatal(err)
	}
	// A throwaway server certificate: this test is about the data.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "inventory test"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cas := x509.NewCertPool()
	cas.AddCert(s.d.ClientCA.Cert)
	rc, err := restconf.New(restconf.Config{NETCONF: s.nc, TLS: netconf.TLSConfig{Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		ClientCAs: cas, CertToName: []netconf.CertToName{{MapType: "common-name"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rc.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	s.c = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{s.d.ClientCert}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}}}
	return s
}

func (s *invServer) get(t *testing.T, path, accept string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", "https://"+s.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes()
}

type jsonRIM struct {
	Digest    string `json:"digest"`
	MediaType string `json:"media-type"`
	Size      string `json:"size"` // uint64: a string in JSON (RFC 7951 §6.1)
	FileName  string `json:"file-name"`
	Content   []byte `json:"content"`
}

const invPath = "/restconf/data/riv-software-inventory:software-inventory"

// TestInventoryOverRESTCONF is the verifier's path over RESTCONF: the
// summary with fields, one component's RIMs at component=TAGID/rim (a
// JSON array, RFC 7951 §5.4, binary as base64), one RIM by its digest, a
// missing tag-id (404), and the XML the list has none of (406). Every
// JSON body validates with yanglint, and the RIMs are the vendor's files
// and verify.
func TestInventoryOverRESTCONF(t *testing.T) {
	s := startInventoryServer(t)
	dir := t.TempDir()
	set := s.nc.Schema()

	status, _, all := s.get(t, "/restconf/data", js)
	if status != 200 || !bytes.Contains(all, []byte(`"riv-software-inventory:software-inventory":{"component":[`)) {
		t.Fatalf("GET /restconf/data = %d %.300s", status, all)
	}
	var data map[string]json.RawMessage
	json.Unmarshal(all, &data)
	oper := filepath.Join(dir, "oper.json")
	os.WriteFile(oper, data["ietf-restconf:data"], 0o600)
	yanglintSchema(t, set, "data", oper)

	status, _, sum := s.get(t, invPath+"?fields=component(tag-id;rim(digest;media-type;file-name))", js)
	if status != 200 || bytes.Contains(sum, []byte(`"content"`)) || bytes.Contains(sum, []byte(`"software-name"`)) {
		t.Fatalf("summary = %d %.600s", status, sum)
	}
	os.WriteFile(filepath.Join(dir, "summary.json"), sum, 0o600)
	yanglintSchema(t, set, "get", filepath.Join(dir, "summary.json"))
	var summary struct {
		Inv struct {
			Components []struct {
				TagID string    `json:"tag-id"`
				RIMs  []jsonRIM `json:"rim"`
			} `json:"component"`
		} `json:"riv-software-inventory:software-inventory"`
	}
	if err := json.Unmarshal(sum, &summary); err != nil || len(summary.Inv.Components) != 6 {
		t.Fatalf("summary: %v, %d components", err, len(summary.Inv.Components))
	}

	platform := s.v.TagID("base", "rtr-1000", "2.0")
	status, h, body := s.get(t, invPath+"/component="+platform+"/rim", js)
	if status != 200 || h.Get("Content-Type") != js || !bytes.HasPrefix(body, []byte(`{"riv-software-inventory:rim":[{"digest":"`)) {
		t.Fatalf("GET component=%s/rim = %d %.300s", platform, status, body)
	}
	// yanglint reads the fragment at its place in the tree.
	var frag map[string]json.RawMessage
	json.Unmarshal(body, &frag)
	wrapped := `{"riv-software-inventory:software-inventory":{"component":[{"tag-id":"` + platform + `","rim":` + string(frag["riv-software-inventory:rim"]) + `}]}}`
	os.WriteFile(filepath.Join(dir, "rims.json"), []byte(wrapped), 0o600)
	yanglintSchema(t, set, "get", filepath.Join(dir, "rims.json"))
	var rims struct {
		RIMs []jsonRIM `json:"riv-software-inventory:rim"`
	}
	if err := json.Unmarshal(body, &rims); err != nil || len(rims.RIMs) != 3 {
		t.Fatalf("component=%s/rim: %v, %d RIMs", platform, err, len(rims.RIMs))
	}
	var supportDigest string
	for _, r := range rims.RIMs {
		file, err := os.ReadFile(filepath.Join(s.flat, r.FileName))
		d := sha256.Sum256(r.Content)
		if err != nil || !bytes.Equal(file, r.Content) || hex.EncodeToString(d[:]) != r.Digest {
			t.Errorf("%s: the served RIM is not the vendor's file (%v)", r.FileName, err)
		}
		if r.MediaType == inventory.MediaSupport {
			supportDigest = r.Digest
			continue
		}
		if _, err := rim.Verify(r.Content, rim.VerifyOptions{Roots: s.v.Roots()}); err != nil {
			t.Errorf("%s: rim.Verify = %v", r.FileName, err)
		}
	}

	status, _, body = s.get(t, invPath+"/component="+platform+"/rim="+supportDigest, js)
	if status != 200 || !bytes.HasPrefix(body, []byte(`{"riv-software-inventory:rim":[{"digest":"`+supportDigest+`"`)) {
		t.Errorf("GET rim=%s = %d %.200s", supportDigest, status, body)
	}
	status, h, body = s.get(t, invPath+"/component="+platform+"/rim="+supportDigest, xmlType)
	if status != 200 || h.Get("Content-Type") != xmlType || !bytes.HasPrefix(body, []byte(`<rim xmlns="`+netconf.NSSoftwareInventory+`"><digest>`+supportDigest+`</digest>`)) {
		t.Errorf("GET rim=%s as XML = %d %.200s", supportDigest, status, body)
	}
	for _, c := range []struct {
		name, path, accept string
		status             int
	}{
		{"unknown tag-id", invPath + "/component=00000000-0000-0000-0000-000000000000/rim", js, 404},
		{"unknown digest", invPath + "/component=" + platform + "/rim=" + strings.Repeat("0", 64), js, 404},
		{"whole list as XML", invPath + "/component=" + platform + "/rim", xmlType, 406},
		{"list mid-path", invPath + "/component/rim", js, 400},
	} {
		status, _, body := s.get(t, c.path, c.accept)
		if status != c.status || !bytes.Contains(body, []byte("invalid-value")) {
			t.Errorf("%s: GET %s = %d %.300s, want %d invalid-value", c.name, c.path, status, body, c.status)
		}
	}
}

// TestInventoryReloadModifies: a reload is a change of the data resource:
// its entity tag changes, and a client asking with the old one gets the
// new representation, not 304.
func TestInventoryReloadModifies(t *testing.T) {
	s := startInventoryServer(t)
	status, h, _ := s.get(t, invPath, js)
	if status != 200 || h.Get("ETag") == "" {
		t.Fatalf("GET = %d, ETag %q", status, h.Get("ETag"))
	}
	tag := h.Get("ETag")
	if status, _, _ := s.get(t, invPath, js, "If-None-Match", tag); status != http.StatusNotModified {
		t.Errorf("unchanged: %d, want 304", status)
	}
	before := len(s.store.Current().Components)
	// The NOS removes a package.
	if err := os.RemoveAll(filepath.Join(s.dir, "frr")); err != nil {
		t.Fatal(err)
	}
	if err := s.store.Reload(); err != nil {
		t.Fatal(err)
	}
	status, h, body := s.get(t, invPath, js, "If-None-Match", tag, "If-Modified-Since", time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat))
	if status != 200 || h.Get("ETag") == tag || bytes.Count(body, []byte(`"tag-id"`)) != before-1 {
		t.Errorf("after the reload: %d, ETag %s (was %s), %d components", status, h.Get("ETag"), tag, bytes.Count(body, []byte(`"tag-id"`)))
	}
}
