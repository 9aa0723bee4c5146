package snmp

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/pkg/mibdef"
)

// TestViewWalk: a walk of the whole view by GETNEXT visits every
// instance once, in strictly increasing order, each readable by GET; the
// lazy log tables give as many rows and fragments as the logs hold.
func TestViewWalk(t *testing.T) {
	s, _ := fuzzServer(t)
	v, err := s.view(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var prev oid
	count := map[string]int{}
	for n := 0; ; n++ {
		vb, ok := v.next(prev)
		if !ok {
			break
		}
		if n > 10000 {
			t.Fatal("the walk does not end")
		}
		if prev != nil && vb.oid.cmp(prev) <= 0 {
			t.Fatalf("walk went from %v back to %v", prev, vb.oid)
		}
		val, found, _ := v.get(vb.oid)
		if !found || string(val) != string(vb.val) {
			t.Errorf("GET %v = %x, %v; the walk gave %x", vb.oid, val, found, vb.val)
		}
		for name, p := range map[string]mibdef.OID{"events": mibdef.EventEntry.Child(mibdef.EventPcr), "data": mibdef.EventData, "quote": mibdef.QuoteData,
			"challenges": mibdef.ChallengeEntry.Child(mibdef.ChallengeState), "cert fragments": mibdef.CertFragmentData} {
			if vb.oid.hasPrefix(oid(p)) {
				count[name]++
			}
		}
		prev = vb.oid
	}
	// 2 BIOS + 2 IMA entries; data: 33 bytes (1), none, 2 × ~340 (2 each);
	// the quote: 300 (2) + 72 (1).
	want := map[string]int{"events": 4, "data": 5, "quote": 3, "challenges": 1}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}

	// Incremental reads: from the last entry a manager holds.
	for _, tc := range []struct {
		from, want mibdef.OID
	}{
		{mibdef.EventEntry.Child(mibdef.EventPcr, 2, 0), mibdef.EventEntry.Child(mibdef.EventPcr, 2, 5)},
		{mibdef.EventEntry.Child(mibdef.EventPcr, 1, 1), mibdef.EventEntry.Child(mibdef.EventPcr, 2, 0)},
		{mibdef.EventEntry.Child(mibdef.EventPcr, 2, 5), mibdef.EventEntry.Child(mibdef.EventType, 1, 0)},
		{mibdef.EventEntry.Child(mibdef.EventPcr, 1), mibdef.EventEntry.Child(mibdef.EventPcr, 1, 0)},
		{mibdef.EventEntry.Child(mibdef.EventPcr, 1, 0, 9), mibdef.EventEntry.Child(mibdef.EventPcr, 1, 1)},
		{mibdef.EventData.Child(1, 0, 65535), mibdef.EventData.Child(2, 0, 1)}, // entry 1 has no data
		{mibdef.EventData.Child(2, 0, 1), mibdef.EventData.Child(2, 0, 2)},
		{mibdef.EventData.Child(2, 1), mibdef.EventData.Child(2, 5, 1)},
		{mibdef.QuoteData.Child(7, 1, 2), mibdef.QuoteData.Child(7, 2, 1)},
	} {
		vb, ok := v.next(oid(tc.from))
		if !ok || vb.oid.cmp(oid(tc.want)) != 0 {
			t.Errorf("next(%v) = %v, %v; want %v", oid(tc.from), vb.oid, ok, oid(tc.want))
		}
	}
	// A column of an entry that does not exist is noSuchInstance.
	if _, found, exists := v.get(oid(mibdef.EventEntry.Child(mibdef.EventPcr, 2, 3))); found || !exists {
		t.Errorf("GET of a missing entry: found %v, exists %v", found, exists)
	}
	if _, found, exists := v.get(oid(mibdef.ChallengeEntry.Child(mibdef.ChallengeNonce, 99))); found || !exists {
		t.Errorf("GET of a missing challenge: found %v, exists %v", found, exists)
	}
}
