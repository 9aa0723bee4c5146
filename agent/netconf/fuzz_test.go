package netconf

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/logsrc"
	"github.com/openriv/riv/pkg/tpm"
)

var fuzzServer struct {
	once sync.Once
	s    *Server
	err  error
}

// fuzzTarget is a server on the simulator (one per fuzzing process) whose
// NACM permits everything to user "fuzz".
func fuzzTarget(f *testing.F) *Server {
	fuzzServer.once.Do(func() {
		ctx := context.Background()
		tp, err := tpm.Open(ctx, "sim")
		if err != nil {
			fuzzServer.err = err
			return
		}
		iak, err := tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
		if err != nil {
			fuzzServer.err = err
			return
		}
		a, err := attester.New(ctx, attester.Config{TPM: tp, Logs: logsrc.NewMemory(), QuotesPerSecond: 1e9, QuoteBurst: 1 << 30,
			Certificates: []attester.Certificate{{Name: "iak", Type: attester.CertIAK, Key: iak}}})
		if err != nil {
			fuzzServer.err = err
			return
		}
		fuzzServer.s, fuzzServer.err = New(Config{Attester: a, MaxMessageSize: 64 << 10, HelloTimeout: time.Second, IdleTimeout: time.Second,
			NACM: NACM{Groups: map[string][]string{"all": {"fuzz"}}, Rules: []Rule{{Group: "all", Operation: "*", Action: "permit"}}}})
	})
	if fuzzServer.err != nil {
		f.Fatal(fuzzServer.err)
	}
	return fuzzServer.s
}

var rpcSeeds = []string{
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get/></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="2"><get><filter type="subtree"><rats-support-structures xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><tpms/></rats-support-structures></filter></get></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="3"><tpm20-challenge-response-attestation xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><pcr-index>0</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="4"><log-retrieval xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>bios</log-type><log-selector><last-index-number>3</last-index-number></log-selector></log-retrieval></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="5"><get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><max-depth>2</max-depth><config-filter>false</config-filter></get-data></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="6"><get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-yang-types</identifier></get-schema></rpc>`,
	`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"><kill-session><session-id>9</session-id></kill-session></rpc>`,
}

// FuzzRPC feeds one <rpc> from a permitted user to the server: any bytes
// get an rpc-reply (data, <ok/> or an rpc-error), never a panic.
func FuzzRPC(f *testing.F) {
	for _, s := range rpcSeeds {
		f.Add([]byte(s))
	}
	s := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		reply := s.Exchange(context.Background(), "fuzz", msg)
		if len(reply) == 0 {
			t.Fatal("no reply")
		}
	})
}

// FuzzSession feeds a whole client stream — hello, framing, any RPCs — to
// a session over a pipe: it must end (with the stream, a framing error or
// a timeout), never panic or hang.
func FuzzSession(f *testing.F) {
	hello10 := `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>`
	hello11 := `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>]]>]]>`
	f.Add([]byte(hello10 + rpcSeeds[0] + "]]>]]>"))
	f.Add([]byte(hello11 + "\n#" + itoa(len(rpcSeeds[3])) + "\n" + rpcSeeds[3] + "\n##\n"))
	f.Add([]byte(hello11 + "\n#18446744073709551617\nx\n##\n"))
	f.Add([]byte(hello11 + "\n#4\n<rpc\n#3\n/>x\n##\n"))
	s := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.serve(context.Background(), server, peer{user: "fuzz", transport: "netconf-ssh", dl: server})
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
