package netconf_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	nc "github.com/nemith/netconf"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/pkg/schema"
	"github.com/openriv/riv/yang"
)

func exchangeT(t *testing.T, d *device.Device, op string) string {
	t.Helper()
	return string(d.Server.Exchange(context.Background(), d.User, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1">`+op+`</rpc>`)))
}

type libModule struct {
	Name     string   `xml:"name"`
	Revision string   `xml:"revision"`
	NS       string   `xml:"namespace"`
	Features []string `xml:"feature"`
}

func library(t *testing.T, d *device.Device) (impl, importOnly []libModule, datastores []string) {
	t.Helper()
	var r struct {
		Set struct {
			Impl []libModule `xml:"module"`
			Imp  []libModule `xml:"import-only-module"`
		} `xml:"data>yang-library>module-set"`
		DS []string `xml:"data>yang-library>datastore>name"`
	}
	if err := xml.Unmarshal([]byte(exchangeT(t, d, `<get><filter type="subtree"><yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"/></filter></get>`)), &r); err != nil {
		t.Fatal(err)
	}
	return r.Set.Impl, r.Set.Imp, r.DS
}

// TestGetSchemaEveryModule is item B1: <get-schema> returns every module
// and revision the YANG library lists, byte for byte the official text
// embedded in the binary (RFC 6022 §3.1), and a version that does not
// exist is an error.
func TestGetSchemaEveryModule(t *testing.T) {
	d := startDevice(t)
	impl, imp, _ := library(t, d)
	if len(impl) < 8 || len(imp) < 4 {
		t.Fatalf("library lists %d implemented and %d import-only modules", len(impl), len(imp))
	}
	for _, m := range append(impl, imp...) {
		var r struct {
			Data string `xml:"data"`
		}
		reply := exchangeT(t, d, fmt.Sprintf(`<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>%s</identifier><version>%s</version><format>yang</format></get-schema>`, m.Name, m.Revision))
		if err := xml.Unmarshal([]byte(reply), &r); err != nil {
			t.Fatal(err)
		}
		want, ok := yang.Find(m.Name, m.Revision)
		if !ok || r.Data != want.Text {
			t.Errorf("get-schema %s@%s: %d bytes, not the official %d", m.Name, m.Revision, len(r.Data), len(want.Text))
		}
	}
	if reply := exchangeT(t, d, `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-tpm-remote-attestation</identifier><version>2021-01-01</version></get-schema>`); !strings.Contains(reply, "<error-tag>invalid-value</error-tag>") {
		t.Errorf("get-schema of a revision that does not exist: %s", reply)
	}
}

// TestLibraryAgrees is item B6: every module a listed module imports is
// listed, every datastore served is listed, and netconf-monitoring fills
// its capabilities, datastores, schemas, sessions and statistics.
func TestLibraryAgrees(t *testing.T) {
	d := startDevice(t)
	s := sshSession(t, d) // an open session netconf-state lists
	impl, imp, ds := library(t, d)
	listed := map[string]bool{}
	for _, m := range append(impl, imp...) {
		listed[m.Name] = true
	}
	for _, name := range []string{"ietf-netconf", "ietf-origin", "ietf-netconf-with-defaults", "ietf-yang-metadata"} {
		if !listed[name] {
			t.Errorf("the library does not list %s", name)
		}
	}
	for _, m := range d.Server.Schema().Modules() {
		if !listed[m.Name] {
			continue
		}
		for _, dep := range m.Imports() {
			if !listed[dep.Name] {
				t.Errorf("%s imports %s, which the library does not list", m.Name, dep.Name)
			}
		}
	}
	if strings.Join(ds, " ") != "ds:running ds:intended ds:operational" {
		t.Errorf("datastores listed %v", ds)
	}
	for _, d2 := range []string{"running", "intended", "operational"} {
		r := exchangeT(t, d, `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:`+d2+`</datastore></get-data>`)
		if strings.Contains(r, "<rpc-error>") {
			t.Errorf("listed datastore %s is not served: %s", d2, r)
		}
	}
	r, err := do(t, s, `<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/></filter></get>`)
	if err != nil {
		t.Fatal(err)
	}
	body := string(r.Body)
	for _, want := range []string{"<capability>urn:ietf:params:netconf:base:1.1</capability>", "<datastore><name>running</name></datastore>",
		"<identifier>ietf-tpm-remote-attestation</identifier>", "<transport>netconf-ssh</transport>", "<username>" + d.User + "</username>",
		"<in-sessions>1</in-sessions>", "<netconf-start-time>"} {
		if !strings.Contains(body, want) {
			t.Errorf("netconf-state lacks %s:\n%.600s", want, body)
		}
	}
}

// TestHelloCapabilities is item B3: YANG 1.1 modules are announced only
// through the yang-library capability (RFC 7950 §5.6.4); the YANG 1.0
// modules the agent implements with ?module=, and with-defaults.
func TestHelloCapabilities(t *testing.T) {
	d := startDevice(t)
	s := sshSession(t, d)
	caps := strings.Join(s.ServerCapabilities(), "\n")
	for _, m := range d.Server.Schema().Modules() {
		announced := strings.Contains(caps, "?module="+m.Name+"&")
		if m.YANGVersion == "1.1" && announced {
			t.Errorf("YANG 1.1 module %s announced with ?module=", m.Name)
		}
		if m.Implemented && m.YANGVersion == "1" && !announced {
			t.Errorf("YANG 1.0 module %s not announced", m.Name)
		}
	}
	for _, want := range []string{"urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id=",
		"urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit"} {
		if !strings.Contains(caps, want) {
			t.Errorf("hello lacks %s:\n%s", want, caps)
		}
	}
}

// TestClientHelloWithSessionID is item B7: a client <hello> carrying a
// <session-id> ends the session (RFC 6241 §8.1).
func TestClientHelloWithSessionID(t *testing.T) {
	d := startDevice(t)
	signer, _ := ssh.NewSignerFromKey(d.SSHClientKey)
	client, err := ssh.Dial("tcp", d.SSHAddr, &ssh.ClientConfig{User: d.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sess, _ := client.NewSession()
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("netconf"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r)
	readMsg(t, br)
	fmt.Fprint(w, `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities><session-id>4</session-id></hello>]]>]]>`)
	fmt.Fprint(w, `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get/></rpc>]]>]]>`)
	done := make(chan string)
	go func() { done <- readMsg(t, br) }()
	select {
	case m := <-done:
		if m != "" {
			t.Errorf("session went on after a hello with a session-id: %.200s", m)
		}
	case <-time.After(10 * time.Second):
		t.Error("session still open 10 s after a hello with a session-id")
	}
}

// TestFeaturesFollowLogs is item B8: the device announces the log types
// it keeps as the module's features, and serves each.
func TestFeaturesFollowLogs(t *testing.T) {
	for _, c := range []struct {
		runtime attester.LogType
		want    string
	}{{attester.LogNetequip, "bios netequip_boot"}, {attester.LogIMA, "bios ima"}} {
		t.Run(string(c.runtime), func(t *testing.T) {
			d, err := device.Start(context.Background(), device.Options{RuntimeLog: c.runtime})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			impl, _, _ := library(t, d)
			for _, m := range impl {
				if m.Name == "ietf-tpm-remote-attestation" && strings.Join(m.Features, " ") != c.want {
					t.Errorf("features %v, want %s", m.Features, c.want)
				}
			}
			for _, lt := range strings.Fields(c.want) {
				r := exchangeT(t, d, `<log-retrieval xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>`+lt+`</log-type><log-selector><log-entry-quantity>1</log-entry-quantity></log-selector></log-retrieval>`)
				if !strings.Contains(r, "<event-number>") {
					t.Errorf("log %s: %.300s", lt, r)
				}
			}
			other := "ima"
			if c.runtime == attester.LogIMA {
				other = "netequip_boot"
			}
			if r := exchangeT(t, d, `<log-retrieval xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>`+other+`</log-type></log-retrieval>`); !strings.Contains(r, "invalid-value") {
				t.Errorf("log %s the device does not keep: %.300s", other, r)
			}
		})
	}
}

// TestSessionsOfOneUserShareTheTPM: the TPM's turns and rate belong to
// the authenticated user, so a second session (or a reconnect) does not
// get a fresh allowance while the first has spent it.
func TestSessionsOfOneUserShareTheTPM(t *testing.T) {
	d := device.StartT(t, device.Options{QuotesPerSecond: 2})
	challenge := func(s *nc.Session, i int) error {
		nonce := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("nonce %02d of the shared bucket...", i)))
		r, err := do(t, s, `<tpm20-challenge-response-attestation `+tpmNS+`><tpm20-attestation-challenge><nonce-value>`+nonce+`</nonce-value></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`)
		if err == nil && len(r.Errors) > 0 {
			err = fmt.Errorf("%s: %s", r.Errors[0].Tag, r.Errors[0].Message)
		}
		return err
	}
	first := sshSession(t, d)
	denied := false
	for i := range 4 {
		if err := challenge(first, i); err != nil {
			if !strings.Contains(err.Error(), "resource-denied") {
				t.Fatalf("challenge %d: %v", i, err)
			}
			denied = true
			break
		}
	}
	if !denied {
		t.Fatal("the first session was never rate-limited")
	}
	if err := challenge(sshSession(t, d), 9); err == nil || !strings.Contains(err.Error(), "resource-denied") {
		t.Errorf("a new session of the same user got a fresh allowance: %v", err)
	}
}

// TestReplyEnvelope: the rpc's attributes come back on rpc-reply (RFC
// 6241 §4.2) as well-formed XML — xml:lang with its reserved prefix, not
// a declaration of it — and an rpc with an attribute twice is not
// well-formed: malformed-message.
func TestReplyEnvelope(t *testing.T) {
	d := device.StartT(t, device.Options{})
	r := string(d.Server.Exchange(context.Background(), d.User, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7" xml:lang="en"><get-config><source><running/></source></get-config></rpc>`)))
	if !strings.Contains(r, ` xml:lang="en"`) || strings.Contains(r, `="http://www.w3.org/XML/1998/namespace"`) {
		t.Errorf("reply envelope: %.200s", r)
	}
	if _, err := schema.ParseXML([]byte(r), schema.Limits{}); err != nil {
		t.Errorf("reply is not well-formed: %v", err)
	}
	r = string(d.Server.Exchange(context.Background(), d.User, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1" message-id="2"><get/></rpc>`)))
	if !strings.Contains(r, "malformed-message") || strings.Contains(r, "message-id=") {
		t.Errorf("rpc with message-id twice: %.300s", r)
	}
}
