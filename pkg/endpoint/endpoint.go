// Package endpoint is the endpoints.json contract (DESIGN.md §4) that
// `riv-agent dev` writes and the collector, rivctl and the testbed read:
// how to reach a device and what to trust it against.
package endpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Endpoints is DIR/endpoints.json. Keys may be added; these names stay.
// Paths are absolute.
type Endpoints struct {
	NetconfSSH    string `json:"netconf_ssh"`
	NetconfTLS    string `json:"netconf_tls"`
	RESTCONF      string `json:"restconf"` // https://HOST:PORT
	SNMP          string `json:"snmp"`     // HOST:PORT (UDP), SNMPv3 authPriv
	SSHUser       string `json:"ssh_user"`
	SSHPrivateKey string `json:"ssh_private_key"`
	TLSClientCert string `json:"tls_client_cert"`
	TLSClientKey  string `json:"tls_client_key"`
	TrustAnchors  string `json:"trust_anchors"`
	// OwnerAnchors are the owner CAs of an LDevID/LAK the device was
	// enrolled with (riv-agent dev --local); empty otherwise.
	OwnerAnchors string `json:"owner_anchors,omitempty"`
	RIMSigner    string `json:"rim_signer"`
	RIMs         string `json:"rims"`
	Serial       string `json:"serial"`
	// The SNMPv3 user: net-snmp's -u, -a, -A, -x, -X.
	SNMPUser         string `json:"snmp_user"`
	SNMPAuthProtocol string `json:"snmp_auth_protocol"`
	SNMPAuthKey      string `json:"snmp_auth_key"`
	SNMPPrivProtocol string `json:"snmp_priv_protocol"`
	SNMPPrivKey      string `json:"snmp_priv_key"`
	Attack           string `json:"attack,omitempty"`
}

// Read reads an endpoints.json.
func Read(path string) (*Endpoints, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e Endpoints
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &e, nil
}

// Write writes e to path atomically (a reader never sees half a file).
func (e *Endpoints) Write(path string) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
