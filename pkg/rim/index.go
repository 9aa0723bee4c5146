package rim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/openriv/riv/pkg/alg"
)

// Index answers "which signed RIM lists this file hash?" for appraisal,
// and knows which tags newer tags supersede, so that a rollback to an
// older, once-valid image is recognised.
type Index struct {
	tags       map[string]*Tag     // by tag-id
	order      []string            // tag-ids in the order added
	files      map[string][]Match  // by key(alg, hash)
	superseded map[string][]string // tag-id → the tag-ids that supersede it
	pcrRefs    []PCRReference      // from signed CoRIMs
	supports   []SupportRIM        // base RIMs' reference event logs
	// items holds a hash of each thing indexed, for Digest; digest is
	// Digest's result once computed (nil again after an addition).
	items  [][32]byte
	digest atomic.Pointer[[32]byte]
}

// Match is a reference file hash and the tag that lists it.
type Match struct {
	TagID string
	Name  string // software-name
	Ver   string // software-version
	Path  string
	// Product is the product the tag is for ("" for any).
	Product string
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{tags: map[string]*Tag{}, files: map[string][]Match{}, superseded: map[string][]string{}}
}

// key is the algorithm's two bytes followed by the hash. It is built in
// buf, and a map index with string(key) does not allocate: Lookup runs
// for every measured file of every poll.
func key(buf []byte, a alg.ID, h []byte) []byte {
	return append(append(buf[:0], byte(a>>8), byte(a)), h...)
}

// Add indexes a verified CoSWID. Re-adding a tag-id replaces nothing and
// fails: two different tags with one id is a supply-chain error.
func (x *Index) Add(t *Tag) error {
	id := t.TagID.String()
	if _, dup := x.tags[id]; dup {
		return fmt.Errorf("tag %s indexed twice", id)
	}
	x.tags[id] = t
	x.order = append(x.order, id)
	enc, err := t.Encode()
	if err != nil {
		enc = []byte(id)
	}
	x.item("tag", enc)
	for _, f := range t.Files() {
		if f.Alg.IsHash() {
			k := string(key(nil, f.Alg, f.Hash))
			x.files[k] = append(x.files[k], Match{TagID: id, Name: t.SoftwareName, Ver: t.SoftwareVersion, Path: f.Path, Product: t.Product()})
		}
	}
	sup, _ := t.LinkedTags("supersedes")
	for _, old := range sup {
		x.superseded[old] = append(x.superseded[old], id)
	}
	return nil
}

// Lookup returns the tags listing a file hash.
func (x *Index) Lookup(a alg.ID, h []byte) []Match {
	var buf [2 + 64]byte
	return x.files[string(key(buf[:], a, h))]
}

// LookupFor returns the tags listing a file hash that are for product
// model, or for no product: a vendor's RIM for one product never vouches
// for a file of another. It allocates only when a tag for another
// product lists the hash.
func (x *Index) LookupFor(a alg.ID, h []byte, model string) []Match {
	m := x.Lookup(a, h)
	for i, c := range m {
		if c.Product != "" && c.Product != model {
			out := slices.Clone(m[:i])
			for _, c := range m[i+1:] {
				if c.Product == "" || c.Product == model {
					out = append(out, c)
				}
			}
			return out
		}
	}
	return m
}

// SupersededBy returns the tag-ids that supersede tagID (transitively), or
// nil if it is current.
func (x *Index) SupersededBy(tagID string) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(string)
	walk = func(id string) {
		for _, n := range x.superseded[id] {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
				walk(n)
			}
		}
	}
	walk(tagID)
	sort.Strings(out)
	return out
}

// Current returns the first match whose tag no other tag supersedes, and
// false when every tag listing the hash has been superseded (a rollback
// to software the vendor has replaced).
func (x *Index) Current(m []Match) (Match, bool) {
	for _, c := range m {
		if len(x.superseded[c.TagID]) == 0 {
			return c, true
		}
	}
	if len(m) > 0 {
		return m[0], false
	}
	return Match{}, false
}

// CurrentFor is Current for a device of product model: only the tags for
// that product (or for none) supersede, so a tag for another product
// cannot make this one's software a rollback.
func (x *Index) CurrentFor(m []Match, model string) (Match, bool) {
	for _, c := range m {
		current := true
		for _, by := range x.superseded[c.TagID] {
			if t := x.tags[by]; t != nil && (t.Product() == "" || t.Product() == model) {
				current = false
				break
			}
		}
		if current {
			return c, true
		}
	}
	if len(m) > 0 {
		return m[0], false
	}
	return Match{}, false
}

// Tag returns an indexed tag.
func (x *Index) Tag(id string) *Tag { return x.tags[id] }

// Clone returns a copy of x that can be added to without changing x: the
// verifier adds RIMs it fetched from devices to a clone and swaps it in,
// while appraisals in progress keep reading the index they started with.
// Tags and reference values are shared (they are never changed).
func (x *Index) Clone() *Index {
	c := &Index{tags: make(map[string]*Tag, len(x.tags)), order: slices.Clone(x.order), files: make(map[string][]Match, len(x.files)),
		superseded: make(map[string][]string, len(x.superseded)), pcrRefs: slices.Clone(x.pcrRefs), supports: slices.Clone(x.supports),
		items: slices.Clone(x.items)}
	for k, v := range x.tags {
		c.tags[k] = v
	}
	for k, v := range x.files {
		c.files[k] = slices.Clone(v)
	}
	for k, v := range x.superseded {
		c.superseded[k] = slices.Clone(v)
	}
	return c
}

// item records a hash of something indexed.
func (x *Index) item(kind string, parts ...[]byte) {
	h := sha256.New()
	h.Write([]byte(kind))
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	x.items = append(x.items, [32]byte(h.Sum(nil)))
	x.digest.Store(nil)
}

// Digest identifies what the index holds, whatever the order it was added
// in: two indexes with one digest give the same answers. A verifier keeps
// it with the findings it made against the index, so that findings kept
// across a restart are reused only against the same reference values.
// It is computed once per index (a verifier snapshots every device after
// every poll), not on each call.
func (x *Index) Digest() [32]byte {
	if d := x.digest.Load(); d != nil {
		return *d
	}
	items := slices.Clone(x.items)
	slices.SortFunc(items, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, it := range items {
		h.Write(it[:])
	}
	d := [32]byte(h.Sum(nil))
	x.digest.Store(&d)
	return d
}

// Product is the product a tag is for: its software-meta product, or the
// platform model of its TCG RIM extension ("" for neither).
func (t *Tag) Product() string {
	if t.SoftwareMetas != nil {
		for _, m := range *t.SoftwareMetas {
			if m.Product != "" {
				return m.Product
			}
		}
	}
	if t.RIM != nil {
		return t.RIM.PlatformModelName
	}
	return ""
}
