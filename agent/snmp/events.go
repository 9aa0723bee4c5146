package snmp

import (
	"context"
	"encoding/binary"
	"slices"
	"sort"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/mibdef"
)

// logCodes are the rivLogType values.
var logCodes = map[attester.LogType]uint32{attester.LogBIOS: 1, attester.LogIMA: 2, attester.LogNetequip: 3}

// eventCols are the columns of rivEventEntry, in OID order.
var eventCols = []uint32{mibdef.EventPcr, mibdef.EventType, mibdef.EventTemplate, mibdef.EventDigests, mibdef.EventDataLength}

// events serves rivEventTable and rivEventDataTable from the logs as
// one request read them. A log of tens of thousands of entries is not
// turned into varbinds: each lookup finds its entry by number.
type events struct {
	logs []codedLog // by rivLogType
}

type codedLog struct {
	code uint32
	ev   []eventlog.Event // by event-number, ascending
}

// readEvents reads the device's logs (a log that cannot be read is left
// out, as in rivLogTable).
func readEvents(ctx context.Context, a *attester.Attester) *events {
	e := &events{}
	for _, t := range a.LogTypes() {
		code, ok := logCodes[t]
		if !ok {
			continue
		}
		ent, err := a.Config().Logs.Log(ctx, t)
		if err != nil || ent == nil || ent.Log == nil {
			continue
		}
		e.logs = append(e.logs, codedLog{code, ent.Log.Events})
	}
	slices.SortFunc(e.logs, func(a, b codedLog) int { return int(a.code) - int(b.code) })
	return e
}

// entry returns the entry numbered n of log code, or nil.
func (e *events) entry(code, n uint32) *eventlog.Event {
	for _, l := range e.logs {
		if l.code != code {
			continue
		}
		if i, exact := l.seek(n); exact {
			return &l.ev[i]
		}
	}
	return nil
}

// seek returns the position of the first entry numbered n or more, and
// whether it is numbered n.
func (l *codedLog) seek(n uint32) (int, bool) {
	i := sort.Search(len(l.ev), func(i int) bool { return uint32(l.ev[i].Seq) >= n })
	return i, i < len(l.ev) && uint32(l.ev[i].Seq) == n
}

// from says where in log l an instance whose index follows a (log,
// number, ...) may start: skip when all of l comes before a; else the
// position of the first candidate entry, and whether that entry is the
// one a names (a has its number).
func (l *codedLog) from(a oid) (i int, named, skip bool) {
	switch {
	case len(a) == 0 || l.code > a[0] || len(a) == 1 && l.code == a[0]:
		return 0, false, false
	case l.code < a[0]:
		return 0, false, true
	}
	i, named = l.seek(a[1])
	return i, named, false
}

func (e *events) get(o oid) ([]byte, bool, bool) {
	entry, data := oid(mibdef.EventEntry), oid(mibdef.EventData)
	switch {
	case o.hasPrefix(entry) && len(o) > len(entry) && slices.Contains(eventCols, o[len(entry)]):
		if len(o) != len(entry)+3 {
			return nil, false, true
		}
		ev := e.entry(o[len(entry)+1], o[len(entry)+2])
		if ev == nil {
			return nil, false, true
		}
		return eventValue(o[len(entry)], ev), true, true
	case o.hasPrefix(data):
		if len(o) != len(data)+3 {
			return nil, false, true
		}
		ev, f := e.entry(o[len(data)], o[len(data)+1]), o[len(data)+2]
		if ev == nil || f == 0 || f > fragments(len(ev.Data)) {
			return nil, false, true
		}
		return appendTLV(nil, tagOctets, fragment(ev.Data, f)), true, true
	}
	return nil, false, false
}

// after returns the part of o below prefix p that an instance must
// follow: nil when every instance under p follows o, ok false when none
// does.
func after(o, p oid) (oid, bool) {
	switch {
	case o.cmp(p) < 0:
		return nil, true
	case o.hasPrefix(p):
		return o[len(p):], true
	}
	return nil, false
}

func (e *events) next(o oid) (varbind, bool) {
	entry := oid(mibdef.EventEntry)
	for _, c := range eventCols {
		col := append(slices.Clip(entry), c)
		a, ok := after(o, col)
		if !ok {
			continue
		}
		if code, ev := e.rowAfter(a); ev != nil {
			return varbind{append(col, code, uint32(ev.Seq)), eventValue(c, ev)}, true
		}
	}
	data := oid(mibdef.EventData)
	a, ok := after(o, data)
	if !ok {
		return varbind{}, false
	}
	for k := range e.logs {
		l := &e.logs[k]
		i, named, skip := l.from(a)
		if skip {
			continue
		}
		f := uint32(0) // the fragment after which, in entry i
		if named && len(a) > 2 {
			f = a[2]
		}
		for ; i < len(l.ev); i, f = i+1, 0 {
			ev := &l.ev[i]
			if f < fragments(len(ev.Data)) {
				return varbind{append(slices.Clip(data), l.code, uint32(ev.Seq), f+1), appendTLV(nil, tagOctets, fragment(ev.Data, f+1))}, true
			}
		}
	}
	return varbind{}, false
}

// rowAfter returns the first entry whose index (log, number) follows a.
func (e *events) rowAfter(a oid) (uint32, *eventlog.Event) {
	for k := range e.logs {
		l := &e.logs[k]
		i, named, skip := l.from(a)
		if skip {
			continue
		}
		if named {
			i++ // (log, n) itself does not follow (log, n)
		}
		if i < len(l.ev) {
			return l.code, &l.ev[i]
		}
	}
	return 0, nil
}

// eventValue is column c of an entry.
func eventValue(c uint32, ev *eventlog.Event) []byte {
	switch c {
	case mibdef.EventPcr:
		return appendInt(nil, tagInteger, int64(ev.PCR))
	case mibdef.EventType:
		return appendUint(nil, tagGauge32, uint64(ev.Type))
	case mibdef.EventTemplate:
		var t []byte
		if ev.IMA != nil {
			t = []byte(ev.IMA.Template)
		}
		return appendTLV(nil, tagOctets, t)
	case mibdef.EventDigests:
		return appendTLV(nil, tagOctets, digestValues(ev.Digests))
	default: // EventDataLength
		return appendUint(nil, tagGauge32, uint64(len(ev.Data)))
	}
}

// digestValues marshals digests as TPM 2.0 marshals a TPML_DIGEST_VALUES
// (big-endian count, then each digest's TPM_ALG_ID and bytes): the
// syntax of rivEventDigests.
func digestValues(ds []eventlog.Digest) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(ds)))
	for _, d := range ds {
		out = binary.BigEndian.AppendUint16(out, uint16(d.Alg))
		out = append(out, d.Value...)
	}
	return out
}
