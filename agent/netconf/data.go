package netconf

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"github.com/openriv/riv/agent/attester"
	devid "github.com/openriv/riv/pkg/identity"
	"strconv"
	"strings"

	"github.com/openriv/riv/pkg/alg"
)

// XML namespaces of the modules the agent serves.
const (
	NSBase       = "urn:ietf:params:xml:ns:netconf:base:1.0"
	NSTPM        = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"
	NSTAA        = "urn:ietf:params:xml:ns:yang:ietf-tcg-algs"
	NSKeystore   = "urn:ietf:params:xml:ns:yang:ietf-keystore"
	NSCT         = "urn:ietf:params:xml:ns:yang:ietf-crypto-types"
	NSYangLib    = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
	NSMonitoring = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
	NSNMDA       = "urn:ietf:params:xml:ns:yang:ietf-netconf-nmda"
	NSDatastores = "urn:ietf:params:xml:ns:yang:ietf-datastores"
	// NSRestconfMonitoring is RFC 8040's ietf-restconf-monitoring.
	NSRestconfMonitoring = "urn:ietf:params:xml:ns:yang:ietf-restconf-monitoring"
)

func xmlns(prefix, ns string) xml.Attr {
	return xml.Attr{Name: xml.Name{Space: "xmlns", Local: prefix}, Value: ns}
}

// identity makes a leaf holding an identityref value prefix:name with the
// prefix declared on the leaf itself.
func identity(leaf, prefix, ns, name string) *Node {
	return &Node{Name: leaf, Text: prefix + ":" + name, Attrs: []xml.Attr{xmlns(prefix, ns)}}
}

// hashIdentity maps a bank to its ietf-tcg-algs identity.
func hashIdentity(b alg.ID) string {
	switch b {
	case alg.SHA1:
		return "TPM_ALG_SHA1"
	case alg.SHA256:
		return "TPM_ALG_SHA256"
	case alg.SHA384:
		return "TPM_ALG_SHA384"
	case alg.SHA512:
		return "TPM_ALG_SHA512"
	case alg.SM3_256:
		return "TPM_ALG_SM3_256"
	}
	return ""
}

// parseHashIdentity maps "taa:TPM_ALG_SHA256" (any prefix bound to the
// ietf-tcg-algs namespace) to a bank.
func parseHashIdentity(v string) (alg.ID, bool) {
	for _, b := range []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512, alg.SM3_256} {
		if v == hashIdentity(b) {
			return b, true
		}
	}
	return 0, false
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// stateTree builds the operational state the agent reports: RFC 9684's
// rats-support-structures and the ietf-keystore entries its certificates
// reference.
func (s *Server) stateTree() []*Node {
	a := s.cfg.Attester
	tpms := El("tpms")
	var nodes *Node
	if a.MultiTPM() {
		nodes = El("compute-nodes")
	}
	var allCerts []attester.Certificate
	for _, t := range a.TPMs() {
		allCerts = append(allCerts, t.Certificates...)
		certs := El("certificates")
		for _, c := range t.Certificates {
			e := El("certificate", Leaf("name", c.Name))
			if c.KeystoreRef != "" {
				e.Add(Leaf("keystore-ref", c.KeystoreRef))
			}
			if c.Type != "" {
				e.Add(Leaf("type", string(c.Type)))
			}
			certs.Add(e)
		}
		tpm := El("tpm",
			Leaf("name", t.Name),
			Leaf("hardware-based", strconv.FormatBool(t.HardwareBased)),
		)
		if nodes != nil {
			n := El("compute-node", Leaf("node-id", t.Node.ID))
			if t.Node.Name != "" {
				n.Add(Leaf("node-name", t.Node.Name))
			}
			if t.Node.Location != "" {
				n.Add(Leaf("node-location", t.Node.Location))
			}
			nodes.Add(n)
			tpm.Add(Leaf("compute-node", t.Node.ID))
		}
		if t.Manufacturer != "" {
			tpm.Add(Leaf("manufacturer", t.Manufacturer))
		}
		tpm.Add(identity("firmware-version", "taa", NSTAA, "tpm20"))
		for _, b := range t.Banks {
			bank := El("tpm20-pcr-bank", identity("tpm20-hash-algo", "taa", NSTAA, hashIdentity(b)))
			for i := 0; i < 24; i++ {
				bank.Add(Leaf("pcr-index", strconv.Itoa(i)))
			}
			tpm.Add(bank)
		}
		tpm.Add(Leaf("status", "operational"), certs)
		tpms.Add(tpm)
	}
	algos := El("attester-supported-algos")
	for _, name := range s.signingAlgs() {
		algos.Add(identity("tpm20-asymmetric-signing", "taa", NSTAA, name))
	}
	for _, b := range a.Banks() {
		algos.Add(identity("tpm20-hash", "taa", NSTAA, hashIdentity(b)))
	}
	rats := El("rats-support-structures")
	if nodes != nil {
		rats.Add(nodes)
	}
	rats.Add(tpms, algos).InNS(NSTPM)

	keys := El("asymmetric-keys")
	seen := map[string]bool{}
	for _, c := range allCerts {
		if c.KeystoreRef == "" || seen[c.KeystoreRef] || c.Cert == nil {
			continue
		}
		seen[c.KeystoreRef] = true
		spki, _ := x509.MarshalPKIXPublicKey(c.Cert.PublicKey)
		cms, _ := devid.CertsOnlyCMS(c.Cert)
		keys.Add(El("asymmetric-key",
			Leaf("name", c.KeystoreRef),
			identity("public-key-format", "ct", NSCT, "subject-public-key-info-format"),
			Leaf("public-key", b64(spki)),
			// The private key lives in the TPM and never leaves it.
			El("hidden-private-key"),
			El("certificates", El("certificate", Leaf("name", c.Name), Leaf("cert-data", b64(cms)))),
		))
	}
	ks := El("keystore", keys).InNS(NSKeystore)
	return []*Node{rats, ks}
}

func (s *Server) signingAlgs() []string {
	seen := map[string]bool{}
	var out []string
	var certs []attester.Certificate
	for _, t := range s.cfg.Attester.TPMs() {
		certs = append(certs, t.Certificates...)
	}
	for _, c := range certs {
		if c.Key == nil {
			continue
		}
		n := "TPM_ALG_ECDSA"
		if c.Key.Public.Type == alg.RSA {
			n = "TPM_ALG_RSASSA"
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// localName strips an XML prefix from an identity or element value.
func localName(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[i+1:]
	}
	return v
}

// operational is the operational datastore: the state, the software
// inventory, the YANG library (with the deprecated modules-state) and
// NETCONF monitoring.
func (s *Server) operational() []*Node {
	out := s.stateTree()
	if inv := s.softwareInventory(); inv != nil {
		out = append(out, inv)
	}
	out = append(out, s.yangLibrary(), s.modulesState(), s.monitoring())
	if len(s.cfg.RESTCONF) > 0 {
		out = append(out, s.restconfState())
	}
	return out
}
