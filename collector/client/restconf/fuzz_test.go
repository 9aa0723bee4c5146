package restconf

import (
	"testing"

	"github.com/openriv/riv/collector/client/netconf"
)

// FuzzToXML: whatever JSON a device sends, the transcoder and the
// decoders behind it return an error or evidence, never a panic or a
// hang; and what the transcoder writes is XML the NETCONF scanner reads.
func FuzzToXML(f *testing.F) {
	f.Add([]byte(`{"ietf-tpm-remote-attestation:output":{"tpm20-attestation-response":[{"certificate-name":"iak","quote-data":"AAEC","quote-signature":"AwQ=","up-time":16}]}}`), true)
	f.Add([]byte(`{"ietf-tpm-remote-attestation:output":{"system-event-logs":{"node-data":[{"name":"tpm0","log-result":{"boot-event-logs":{"boot-event-entry":[{"event-number":"6","ima-template":"ima-ng","filename-hint":"/a","filedata-hash":"AA==","filedata-hash-algorithm":"sha256","template-hash-algorithm":"sha1","template-hash":"cahwwWENb+HABayzTmm5R5S189s=","pcr-index":10}]}}}]}}}`), true)
	f.Add([]byte(`{"m:a":{"b":[null],"c":[1,"x",true]}}`), false)
	f.Fuzz(func(t *testing.T, b []byte, output bool) {
		x, err := ToXML(b, output)
		if err != nil {
			return
		}
		netconf.DecodeChallenge(x)
		netconf.DecodeLogs(x, "bios")
		netconf.DecodeLogs(x, "netequip_boot")
		netconf.DecodeSupportInventory(append(append([]byte("<data>"), x...), "</data>"...))
	})
}
