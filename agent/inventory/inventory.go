// Package inventory is the agent's software inventory: the components the
// NOS has installed, each described by its vendor's signed CoSWID tag (RFC
// 9393), with the other RIMs the vendor shipped with it (a signed CoRIM of
// PCR reference values, a TCG PC Client support RIM). The NOS installs
// them in a directory, one subdirectory per component; Load reads it, and
// the NETCONF and RESTCONF servers serve it as the riv-software-inventory
// module, so that a Verifier can fetch the reference values it needs from
// the device it appraises (RFC 9683 §2.2: the Attester conveys the
// Reference Value Provider's signed manifests).
//
// Parse, not verify: the agent holds no vendor trust anchors, so it checks
// that every file is what its name says (a COSE_Sign1 of a CoSWID or of a
// CoRIM, a TCG event log) and leaves the signatures to the Verifier
// (pkg/rim.Verify). Every field of a Component comes from an unverified tag:
// a summary to select RIMs by, never evidence.
//
// The layout (docs/software-inventory.md):
//
//	DIR/COMPONENT/*.cose, *.coswid   exactly one signed CoSWID tag
//	DIR/COMPONENT/*.corim            signed CoRIMs
//	DIR/COMPONENT/*.rimel            TCG support RIMs (reference event logs)
//
// Names starting with "." are skipped at both levels, so an installer can
// stage a component under a dot-name and rename it into place (Install
// does).
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	cose "github.com/veraison/go-cose"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/rim"
)

// Media types of the RIM files, as the inventory reports them. RFC 9393
// registers application/swid+cbor for a bare CoSWID; the CoRIM draft names
// a signed CoRIM application/rim+cose, and the signed CoSWID follows that
// pattern. A support RIM has no registered type; the vendor-tree name is
// the project's.
const (
	MediaCoSWID  = "application/swid+cose"
	MediaCoRIM   = "application/rim+cose"
	MediaSupport = "application/vnd.tcg.pcclient-rim-support"
)

// Sentinels a FileError wraps (besides rim.ErrMalformed and the event
// log parser's errors for a file that is not what its name says).
var (
	// ErrTooLarge: a file, a component or the inventory is over its
	// Limits.
	ErrTooLarge = errors.New("over the inventory limits")
	// ErrLayout: the directory is not laid out as an inventory (a file
	// where a component directory belongs, an unknown file type, no tag
	// or two, a tag-id used twice).
	ErrLayout = errors.New("not an inventory layout")
)

// FileError names the file or directory of the inventory that was
// refused, and why.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "inventory: " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Limits bound what Load reads; a zero field takes its default.
type Limits struct {
	MaxFileSize          int64 // one RIM file (default 16 MiB)
	MaxComponents        int   // components in the inventory (default 4096)
	MaxFilesPerComponent int   // RIM files of one component (default 64)
	// MaxTotalSize bounds all RIM bytes together (default 256 MiB): the
	// agent holds them in memory and a <get> of the whole inventory
	// sends them all.
	MaxTotalSize int64
}

// DefaultLimits returns the limits Load applies.
func DefaultLimits() Limits {
	return Limits{MaxFileSize: 16 << 20, MaxComponents: 4096, MaxFilesPerComponent: 64, MaxTotalSize: 256 << 20}
}

func (l Limits) orDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxComponents <= 0 {
		l.MaxComponents = d.MaxComponents
	}
	if l.MaxFilesPerComponent <= 0 {
		l.MaxFilesPerComponent = d.MaxFilesPerComponent
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	return l
}

// Inventory is the software installed on the device. It is not changed
// after Load: a reload makes a new one.
type Inventory struct {
	Dir string
	// Loaded is when the directory was read.
	Loaded time.Time
	// Components, sorted by tag-id.
	Components []*Component
}

// Component is one installed component, described by its CoSWID tag
// (RFC 9393 §2.3 names). Untrusted: read from a tag nobody verified.
type Component struct {
	// Name is the component's subdirectory (the package's name).
	Name            string
	TagID           string
	TagVersion      int
	SoftwareName    string
	SoftwareVersion string
	// VersionScheme is the RFC 9393 §4.1 name; "" when the tag gives
	// none or one that is not registered.
	VersionScheme               string
	Corpus, Patch, Supplemental bool
	// Measurement is the tag's TCG RIM extension (nil without one), its
	// text made servable as the other fields are.
	Measurement *rim.ReferenceMeasurement
	Entities    []Entity
	Links       []Link
	// Files are the payload's files, directories flattened, by path.
	Files []File
	// RIMs are the component's RIM files: its CoSWID tag first, then the
	// others by file name.
	RIMs []RIM
	// Tag is the decoded CoSWID.
	Tag *rim.Tag
}

// Entity is an entity-entry (RFC 9393 §2.6) with its registered roles
// (§4.2 names); roles that are not registered are left out.
type Entity struct {
	Name, RegID string
	Roles       []string
}

// Link is a link-entry (RFC 9393 §2.7); Rel is the §4.4 name of a
// registered relation, the tag's text for another, or an unregistered
// index in decimal.
type Link struct {
	Href, Rel string
}

// File is a payload file: its size (0 when the tag gives none) and its
// digests in the algorithms RIV knows.
type File struct {
	Path   string
	Size   int64
	Hashes []Hash
}

// Hash is one reference digest of a file.
type Hash struct {
	Alg   alg.ID
	Value []byte
}

// RIM is one RIM file of a component, its bytes unchanged.
type RIM struct {
	FileName  string
	MediaType string
	Digest    [sha256.Size]byte // SHA-256 of Content
	Content   []byte
}

// DigestHex is the digest as the inventory's key: lower-case hex.
func (r *RIM) DigestHex() string { return hex.EncodeToString(r.Digest[:]) }

// Component returns the component whose tag has tagID, or nil.
func (inv *Inventory) Component(tagID string) *Component {
	if inv == nil {
		return nil
	}
	i := sort.Search(len(inv.Components), func(i int) bool { return inv.Components[i].TagID >= tagID })
	if i < len(inv.Components) && inv.Components[i].TagID == tagID {
		return inv.Components[i]
	}
	return nil
}

// RIM returns the component's RIM with the digest (hex), or nil.
func (c *Component) RIM(digest string) *RIM {
	for i := range c.RIMs {
		if c.RIMs[i].DigestHex() == digest {
			return &c.RIMs[i]
		}
	}
	return nil
}

// Load reads the inventory in dir with DefaultLimits.
func Load(dir string) (*Inventory, error) { return Limits{}.Load(dir) }

// Load reads the inventory in dir within l. An empty directory is an
// empty inventory; a missing one is an error.
func (l Limits) Load(dir string) (*Inventory, error) {
	l = l.orDefaults()
	ents, err := readDir(dir, l.MaxComponents)
	if err != nil {
		return nil, &FileError{Path: dir, Err: err}
	}
	inv := &Inventory{Dir: dir, Loaded: time.Now()}
	byTag := map[string]*Component{}
	var total int64
	for _, e := range ents {
		p := filepath.Join(dir, e)
		st, err := os.Stat(p)
		if err != nil {
			return nil, &FileError{Path: p, Err: err}
		}
		if !st.IsDir() {
			return nil, &FileError{Path: p, Err: fmt.Errorf("%w: a file where a component directory belongs", ErrLayout)}
		}
		c, n, err := loadComponent(p, e, l, l.MaxTotalSize-total)
		if err != nil {
			return nil, err
		}
		total += n
		if o := byTag[c.TagID]; o != nil {
			return nil, &FileError{Path: p, Err: fmt.Errorf("%w: tag-id %s is also the tag of component %s", ErrLayout, c.TagID, o.Name)}
		}
		byTag[c.TagID] = c
		inv.Components = append(inv.Components, c)
	}
	sort.Slice(inv.Components, func(i, j int) bool { return inv.Components[i].TagID < inv.Components[j].TagID })
	return inv, nil
}

// readDir lists the names in dir that do not start with ".", sorted, and
// fails once there are more than max: reading a huge directory into memory
// is the very thing the limit is for.
func readDir(dir string, max int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if names = append(names, e.Name()); len(names) > max {
				return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, max)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(names)
	return names, nil
}

// loadComponent reads the component directory p (named name) with at
// most budget bytes of RIMs; it returns the bytes it read.
func loadComponent(p, name string, l Limits, budget int64) (*Component, int64, error) {
	ents, err := readDir(p, l.MaxFilesPerComponent)
	if err != nil {
		return nil, 0, &FileError{Path: p, Err: err}
	}
	files := make(map[string][]byte, len(ents))
	var n int64
	for _, e := range ents {
		fp := filepath.Join(p, e)
		b, err := readFile(fp, l.MaxFileSize)
		if err != nil {
			return nil, 0, &FileError{Path: fp, Err: err}
		}
		if n += int64(len(b)); n > budget {
			return nil, 0, &FileError{Path: fp, Err: fmt.Errorf("%w: the inventory's RIMs pass %d bytes", ErrTooLarge, l.MaxTotalSize)}
		}
		files[e] = b
	}
	c, err := parseComponent(name, files)
	if err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Path = filepath.Join(p, fe.Path)
			return nil, 0, fe
		}
		return nil, 0, &FileError{Path: p, Err: err}
	}
	return c, n, nil
}

// readFile reads a regular file (a symbolic link to one is followed) of at
// most max bytes; the bound holds even if the file grows while it is read.
func readFile(p string, max int64) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrLayout)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, st.Size(), max)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// parseComponent makes the component called name from its files (name to
// content). A refused file is a FileError whose Path is its name.
func parseComponent(name string, files map[string][]byte) (*Component, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var tag *rim.Tag
	var tagRIM RIM
	var others []RIM
	seen := map[[sha256.Size]byte]string{}
	for _, n := range names {
		r, t, err := ParseFile(n, files[n])
		if err != nil {
			return nil, &FileError{Path: n, Err: err}
		}
		if o, dup := seen[r.Digest]; dup {
			return nil, &FileError{Path: n, Err: fmt.Errorf("%w: the same bytes as %s", ErrLayout, o)}
		}
		seen[r.Digest] = n
		if t == nil {
			others = append(others, r)
			continue
		}
		if tag != nil {
			return nil, &FileError{Path: n, Err: fmt.Errorf("%w: a second CoSWID tag (%s is the component's)", ErrLayout, tagRIM.FileName)}
		}
		tag, tagRIM = t, r
	}
	if tag == nil {
		return nil, fmt.Errorf("%w: no CoSWID tag (*.cose or *.coswid)", ErrLayout)
	}
	c, err := fromTag(name, tag)
	if err != nil {
		return nil, &FileError{Path: tagRIM.FileName, Err: fmt.Errorf("%w: CoSWID: %v", rim.ErrMalformed, err)}
	}
	c.RIMs = append([]RIM{tagRIM}, others...)
	return c, nil
}

// ParseFile checks that b is the kind of RIM its file name's extension
// says, strictly, and returns it; for a CoSWID tag it also returns the
// decoded (unverified) tag. Signatures are not checked.
func ParseFile(name string, b []byte) (RIM, *rim.Tag, error) {
	r := RIM{FileName: name, Digest: sha256.Sum256(b), Content: b}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".cose", ".coswid":
		r.MediaType = MediaCoSWID
		payload, err := signedPayload(b, rim.ContentTypeCoSWID, rim.ContentTypeCoSWID+"; profile=tcg-rim")
		if err != nil {
			return RIM{}, nil, err
		}
		t, err := rim.DecodeTag(payload)
		if err != nil {
			return RIM{}, nil, err
		}
		return r, t, nil
	case ".corim":
		r.MediaType = MediaCoRIM
		payload, err := signedPayload(b, rim.ContentTypeCoRIM)
		if err != nil {
			return RIM{}, nil, err
		}
		if _, _, err := rim.DecodeCoRIM(payload); err != nil {
			return RIM{}, nil, err
		}
		return r, nil, nil
	case ".rimel":
		r.MediaType = MediaSupport
		if _, err := eventlog.ParseTCG(b); err != nil {
			return RIM{}, nil, fmt.Errorf("support RIM: %w", err)
		}
		return r, nil, nil
	}
	return RIM{}, nil, fmt.Errorf("%w: unknown RIM file type (want .cose or .coswid, .corim, .rimel)", ErrLayout)
}

// signedPayload decodes a COSE_Sign1 whose protected content type is one
// of types and returns its payload. Which payload decoder applies is
// decided by what the signer protected, as rim.Verify decides it.
func signedPayload(b []byte, types ...string) ([]byte, error) {
	msg, err := rim.DecodeCOSE(b)
	if err != nil {
		return nil, err
	}
	ct, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string)
	ok := false
	for _, t := range types {
		ok = ok || ct == t
	}
	if !ok {
		return nil, fmt.Errorf("%w: COSE content type %q, want %s", rim.ErrMalformed, ct, strings.Join(types, " or "))
	}
	if msg.Payload == nil {
		return nil, fmt.Errorf("%w: detached COSE payload", rim.ErrMalformed)
	}
	return msg.Payload, nil
}

// RFC 9393 §4.2 role names by what swid's Roles.String gives (its
// camelCase names for index values, text roles as written).
var roleNames = map[string]string{
	"tagCreator": "tag-creator", "tag-creator": "tag-creator",
	"softwareCreator": "software-creator", "software-creator": "software-creator",
	"aggregator": "aggregator", "distributor": "distributor", "licensor": "licensor", "maintainer": "maintainer",
}

// RFC 9393 §4.4 names where swid spells them otherwise.
var relNames = map[string]string{
	"installation media": "installationmedia", "package installer": "packageinstaller", "see also": "see-also",
}

var versionSchemes = map[string]bool{
	"multipartnumeric": true, "multipartnumeric+suffix": true, "alphanumeric": true, "decimal": true, "semver": true,
}

// fromTag makes the component summary of t.
func fromTag(name string, t *rim.Tag) (*Component, error) {
	id := t.TagID.String()
	if !printable(id) {
		return nil, fmt.Errorf("tag-id %q is not printable text", id)
	}
	c := &Component{Name: name, TagID: id, TagVersion: t.TagVersion, SoftwareName: text(t.SoftwareName),
		SoftwareVersion: text(t.SoftwareVersion), Corpus: t.Corpus, Patch: t.Patch, Supplemental: t.Supplemental, Tag: t}
	if t.RIM != nil {
		m := *t.RIM
		for _, s := range []*string{&m.BindingSpecName, &m.BindingSpecVersion, &m.PlatformManufacturerName, &m.PlatformModelName,
			&m.PlatformConfigURIGlobal, &m.PlatformConfigURILocal, &m.FirmwareManufacturerName, &m.FirmwareModelName} {
			*s = text(*s)
		}
		c.Measurement = &m
	}
	if t.VersionScheme != nil && versionSchemes[t.VersionScheme.String()] {
		c.VersionScheme = t.VersionScheme.String()
	}
	for _, e := range t.Entities {
		en := Entity{Name: text(e.EntityName), RegID: text(e.RegID)}
		for _, r := range strings.Fields(e.Roles.String()) {
			if n, ok := roleNames[r]; ok && !contains(en.Roles, n) {
				en.Roles = append(en.Roles, n)
			}
		}
		c.Entities = append(c.Entities, en)
	}
	if t.Links != nil {
		for _, l := range *t.Links {
			rel := l.Rel.String()
			if n, ok := relNames[rel]; ok {
				rel = n
			} else if code, ok := strings.CutPrefix(rel, "rel("); ok {
				rel = strings.TrimSuffix(code, ")")
			}
			if rel = text(rel); rel == "" {
				return nil, fmt.Errorf("link to %q has no rel", l.Href)
			}
			c.Links = append(c.Links, Link{Href: text(l.Href), Rel: rel})
		}
	}
	files, err := payloadFiles(t)
	if err != nil {
		return nil, err
	}
	c.Files = files
	return c, nil
}

// payloadFiles merges the tag's payload entries by path: a RIM lists a
// file once per hash algorithm (one hash-entry each, RFC 9393 §2.9.1).
// Two sizes or two digests in one algorithm for the same path make the
// tag contradict itself, and it is refused.
func payloadFiles(t *rim.Tag) ([]File, error) {
	byPath := map[string]*File{}
	var order []string
	for _, fh := range t.Files() {
		p := text(fh.Path)
		if p == "" {
			return nil, errors.New("a payload file has no name")
		}
		f := byPath[p]
		if f == nil {
			f = &File{Path: p}
			byPath[p] = f
			order = append(order, p)
		}
		if fh.Size != 0 {
			if f.Size != 0 && f.Size != fh.Size {
				return nil, fmt.Errorf("payload file %s has sizes %d and %d", p, f.Size, fh.Size)
			}
			f.Size = fh.Size
		}
		if !fh.Alg.IsHash() || len(fh.Hash) == 0 {
			continue // an algorithm RIV has no name for: the signed tag keeps it
		}
		if len(fh.Hash) != fh.Alg.Size() {
			return nil, fmt.Errorf("payload file %s: a %v digest of %d bytes", p, fh.Alg, len(fh.Hash))
		}
		dup := false
		for _, h := range f.Hashes {
			if h.Alg != fh.Alg {
				continue
			}
			if string(h.Value) != string(fh.Hash) {
				return nil, fmt.Errorf("payload file %s has two different %v digests", p, fh.Alg)
			}
			dup = true
		}
		if !dup {
			f.Hashes = append(f.Hashes, Hash{Alg: fh.Alg, Value: fh.Hash})
		}
	}
	sort.Strings(order)
	out := make([]File, 0, len(order))
	for _, p := range order {
		out = append(out, *byPath[p])
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// xmlChar reports whether r may appear in an XML 1.0 document (§2.2):
// the inventory is served as XML, and a tag may hold anything.
func xmlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// text makes a tag's string servable: invalid UTF-8 and characters XML
// cannot carry become U+FFFD, as the XML encoder would make them, so
// that what the agent matches filters against is what it sends.
func text(s string) string {
	if printable(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if !xmlChar(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// printable reports whether s is valid UTF-8 of XML characters only.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !xmlChar(r) {
			return false
		}
	}
	return true
}

// Store holds the inventory the servers serve. Reload reads the
// directory again and swaps the result in; sessions see the new one at
// their next request.
type Store struct {
	dir string
	lim Limits
	cur atomic.Pointer[Inventory]
}

// Open loads dir within lim (zero: DefaultLimits) into a Store.
func Open(dir string, lim Limits) (*Store, error) {
	s := &Store{dir: dir, lim: lim}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the inventory last loaded.
func (s *Store) Current() *Inventory { return s.cur.Load() }

// Reload reads the directory again; when that fails, the inventory
// already loaded stays and the error says why.
func (s *Store) Reload() error {
	inv, err := s.lim.Load(s.dir)
	if err != nil {
		return err
	}
	s.cur.Store(inv)
	return nil
}
