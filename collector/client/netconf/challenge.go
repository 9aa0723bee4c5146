package netconf

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/openriv/riv/pkg/pcr"
)

// maxQuotes bounds the responses one challenge reply may carry (one per
// TPM; RFC 9684 devices have a handful).
const maxQuotes = 64

// DecodeChallenge decodes the body of a tpm20-challenge-response-attestation
// reply: one Quote per tpm20-attestation-response. It walks the bytes with
// the package's scanner (encoding/xml cost about 250 µs per poll here).
// Unknown elements are skipped; a value that is not what the module says
// is an error naming it.
func DecodeChallenge(body []byte) ([]Quote, error) {
	s := &scanner{b: body}
	var out []Quote
	var path [maxDepth + 1][]byte // a self-closing element may sit one below the scanner's limit
	depth := 0
	var text []byte
	var q *Quote
	// Per unsigned-pcr-values list entry: its bank, index and value.
	var bankName []byte
	var idx = -1
	var val []byte
	var banks []pcrPair
	for {
		kind, tok, err := s.next()
		if err != nil {
			return nil, fmt.Errorf("decode challenge reply: %w", err)
		}
		switch kind {
		case tokEOF:
			if len(out) == 0 {
				return nil, errors.New("challenge reply has no tpm20-attestation-response")
			}
			return out, nil
		case tokStart:
			path[depth] = tok
			depth++
			text = text[:0]
			switch {
			case depth == 1 && string(tok) == "tpm20-attestation-response":
				if len(out) == maxQuotes {
					return nil, fmt.Errorf("challenge reply has more than %d responses", maxQuotes)
				}
				out = append(out, Quote{Unsigned: pcr.Values{}})
				q = &out[len(out)-1]
			case depth == 2 && q != nil && string(tok) == "unsigned-pcr-values":
				bankName, banks = nil, banks[:0]
			case depth == 3 && q != nil && string(tok) == "pcr-values":
				idx, val = -1, nil
			}
		case tokText:
			text = append(text, tok...)
		case tokEnd:
			depth--
			v := bytes.TrimSpace(text)
			text = text[:0]
			if q == nil || depth == 0 {
				if depth == 0 {
					q = nil
				}
				continue
			}
			parent := ""
			if depth > 1 {
				parent = string(path[depth-1])
			}
			switch {
			case depth == 1 && string(tok) == "certificate-name":
				q.CertificateName = string(v)
			case depth == 1 && string(tok) == "quote-data":
				if q.Attest, err = base64.StdEncoding.AppendDecode(nil, v); err != nil {
					return nil, errors.New("challenge reply: quote-data is not base64")
				}
			case depth == 1 && string(tok) == "quote-signature":
				if q.Sig, err = base64.StdEncoding.AppendDecode(nil, v); err != nil {
					return nil, errors.New("challenge reply: quote-signature is not base64")
				}
			case depth == 1 && string(tok) == "up-time":
				u, err := parseUint(v, 32)
				if err != nil {
					return nil, fmt.Errorf("challenge reply: up-time: %w", err)
				}
				q.UpTime = uint32(u)
			case depth == 2 && parent == "unsigned-pcr-values" && string(tok) == "tpm20-hash-algo":
				bankName = append(bankName[:0], v...)
			case depth == 3 && parent == "pcr-values" && string(tok) == "pcr-index":
				u, err := parseUint(v, 8)
				if err != nil || u > pcr.MaxPCR {
					return nil, fmt.Errorf("challenge reply: pcr-index %q", v)
				}
				idx = int(u)
			case depth == 3 && parent == "pcr-values" && string(tok) == "pcr-value":
				if val, err = base64.StdEncoding.AppendDecode(nil, v); err != nil {
					return nil, errors.New("challenge reply: pcr-value is not base64")
				}
			case depth == 2 && string(tok) == "pcr-values":
				if idx >= 0 && val != nil {
					banks = append(banks, pcrPair{idx, val})
				}
			case depth == 1 && string(tok) == "unsigned-pcr-values":
				// Unsigned values are informational (they explain a
				// mismatch); a bank this collector does not know is
				// left out rather than failing the reply.
				if b, ok := hashByIdentity(localName(string(bankName))); ok {
					for _, p := range banks {
						q.Unsigned.Set(b, p.i, p.v)
					}
				}
			}
		}
	}
}

type pcrPair struct {
	i int
	v []byte
}
