package netconf

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// maxEntries bounds one decoded reply.
const maxEntries = 1 << 20

// logDecoder decodes log-retrieval replies token by token: the replies
// are the bulk of what the collector reads, and a streaming decode keeps
// memory to one entry and avoids reflection.
type logDecoder struct {
	d *xml.Decoder
}

func newLogDecoder(r io.Reader) *logDecoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	return &logDecoder{d: d}
}

func (ld *logDecoder) decode(logType string) (*eventlog.Log, uint32, error) {
	l := &eventlog.Log{}
	var upTime uint32
	bankSet := map[alg.ID]bool{}
	var path []string
	var text strings.Builder
	var cur *eventlog.Event
	var curIMA *eventlog.IMAEntry
	var digestAlg alg.ID
	var tmplAlg alg.ID
	switch logType {
	case "bios":
		l.Format = eventlog.FormatTCG
	case "ima", "netequip_boot":
		l.Format = eventlog.FormatIMA
	default:
		return nil, 0, fmt.Errorf("log type %q", logType)
	}
	for {
		tok, err := ld.d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("decode log-retrieval reply: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			text.Reset()
			switch t.Name.Local {
			case "bios-event-entry", "boot-event-entry", "ima-event-entry":
				if len(l.Events) >= maxEntries {
					return nil, 0, errors.New("log-retrieval reply: too many entries")
				}
				l.Events = append(l.Events, eventlog.Event{IndexType: 1})
				cur = &l.Events[len(l.Events)-1]
				if t.Name.Local != "bios-event-entry" {
					curIMA = &eventlog.IMAEntry{}
					cur.IMA = curIMA
				}
			}
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			v := strings.TrimSpace(text.String())
			text.Reset()
			name := t.Name.Local
			path = path[:len(path)-1]
			if name == "up-time" && cur == nil {
				u, _ := strconv.ParseUint(v, 10, 32)
				upTime = uint32(u)
				continue
			}
			if cur == nil {
				continue
			}
			if err := ld.field(cur, curIMA, name, v, &digestAlg, &tmplAlg, bankSet); err != nil {
				return nil, 0, fmt.Errorf("log entry %d: %w", len(l.Events)-1, err)
			}
			switch name {
			case "bios-event-entry":
				cur = nil
			case "boot-event-entry", "ima-event-entry":
				if err := finishIMA(cur, tmplAlg); err != nil {
					return nil, 0, fmt.Errorf("log entry %d: %w", len(l.Events)-1, err)
				}
				cur, curIMA = nil, nil
			}
		}
	}
	for _, b := range []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512, alg.SM3_256} {
		if bankSet[b] {
			l.Banks = append(l.Banks, b)
		}
	}
	if l.Format == eventlog.FormatTCG {
		// A bank counts only if every extended event carries it.
		var complete []alg.ID
		for _, b := range l.Banks {
			ok := true
			for i := range l.Events {
				if eventlog.EventType(l.Events[i].Type) != eventlog.EvNoAction && l.Events[i].Digest(b) == nil {
					ok = false
					break
				}
			}
			if ok {
				complete = append(complete, b)
			}
		}
		l.Banks = complete
		for i := range l.Events {
			e := &l.Events[i]
			if eventlog.EventType(e.Type) == eventlog.EvNoAction && e.PCR == 0 && strings.HasPrefix(string(e.Data), "StartupLocality\x00") && len(e.Data) == 17 {
				l.StartupLocality = e.Data[16]
			}
		}
	}
	return l, upTime, nil
}

func b64d(v string) ([]byte, error) { return base64.StdEncoding.DecodeString(v) }

func (ld *logDecoder) field(e *eventlog.Event, ima *eventlog.IMAEntry, name, v string, digestAlg, tmplAlg *alg.ID, banks map[alg.ID]bool) error {
	var err error
	switch name {
	case "event-number":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 63)
		e.Seq = int(n & 0x7fffffff)
	case "event-type":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 32)
		e.Type = uint32(n)
	case "pcr-index":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 8)
		if n > 31 {
			err = fmt.Errorf("pcr-index %d", n)
		}
		e.PCR = int(n)
	case "hash-algo":
		b, ok := hashByIdentity(localName(v))
		if !ok {
			return fmt.Errorf("hash-algo %q", v)
		}
		*digestAlg = b
		banks[b] = true
	case "digest":
		var d []byte
		if d, err = b64d(v); err == nil {
			if len(d) != digestAlg.Size() {
				return fmt.Errorf("%v digest of %d bytes", *digestAlg, len(d))
			}
			e.Digests = append(e.Digests, eventlog.Digest{Alg: *digestAlg, Value: d})
		}
	case "event-data":
		var d []byte
		if d, err = b64d(v); err == nil {
			e.Data = append(e.Data, d...)
		}
	case "ima-template":
		ima.Template = v
	case "filename-hint":
		ima.FileName = v
	case "filedata-hash":
		ima.FileHash, err = b64d(v)
	case "filedata-hash-algorithm":
		ima.FileHashAlgName = v
		ima.FileHashAlg, _ = alg.ParseHash(v)
	case "template-hash-algorithm":
		b, perr := alg.ParseHash(v)
		if perr != nil {
			return fmt.Errorf("template-hash-algorithm %q", v)
		}
		*tmplAlg = b
		banks[b] = true
	case "template-hash":
		var d []byte
		if d, err = b64d(v); err == nil {
			e.Digests = []eventlog.Digest{{Alg: *tmplAlg, Value: d}}
		}
	case "signature":
		ima.Sig, err = b64d(v)
	}
	return err
}

// finishIMA rebuilds the template data the kernel hashed from the fields
// RFC 9684 carries (as for an ASCII log), so every bank can be replayed.
func finishIMA(e *eventlog.Event, tmplAlg alg.ID) error {
	ima := e.IMA
	if len(e.Digests) != 1 || len(e.Digests[0].Value) != tmplAlg.Size() {
		return errors.New("missing or mis-sized template-hash")
	}
	add := func(b []byte, v []byte) []byte {
		return append(binary.LittleEndian.AppendUint32(b, uint32(len(v))), v...)
	}
	var data []byte
	switch ima.Template {
	case "ima-ng", "ima-sig", "ima-buf":
		d := append(append([]byte(ima.FileHashAlgName), ':', 0), ima.FileHash...)
		data = add(data, d)
		data = add(data, append([]byte(ima.FileName), 0))
		ima.Fields = [][]byte{d, append([]byte(ima.FileName), 0)}
		if ima.Template != "ima-ng" {
			data = add(data, ima.Sig)
			ima.Fields = append(ima.Fields, ima.Sig)
		}
	default:
		return fmt.Errorf("ima-template %q cannot be rebuilt from RFC 9684 fields", ima.Template)
	}
	e.Data = data
	return nil
}
