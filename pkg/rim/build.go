package rim

import (
	"fmt"

	"github.com/veraison/swid"

	"github.com/openriv/riv/pkg/alg"
)

// File is a payload file of a RIM: its path and content (hashed here).
type File struct {
	Path    string
	Content []byte
}

// TagSpec describes a CoSWID RIM to build.
type TagSpec struct {
	TagID        string // a UUID string
	TagVersion   int
	Name         string // software-name
	Version      string // software-version
	Vendor       string // tag-creator and software-creator entity-name
	VendorRegID  string // its reg-id (a URI)
	Product      string
	Colloquial   string
	Revision     string
	Edition      string
	Files        []File
	Supersedes   []string // tag-ids this tag replaces (older images)
	Patches      string   // the tag-id this patch tag applies to
	Supplemental bool
	RIM          *ReferenceMeasurement
}

// HashAlgs are the banks every payload file is hashed in: SHA-256 and
// SHA-384 (RFC 9393's file carries one hash-entry, so each file appears
// once per algorithm).
var HashAlgs = []alg.ID{alg.SHA256, alg.SHA384}

// NewTag builds a CoSWID RIM from spec.
func NewTag(spec TagSpec) (*Tag, error) {
	tid, err := swid.NewTagIDFromUUIDString(spec.TagID)
	if err != nil {
		return nil, fmt.Errorf("tag-id %q: %w", spec.TagID, err)
	}
	t := &Tag{RIM: spec.RIM}
	t.TagID = *tid
	t.TagVersion = spec.TagVersion
	t.SoftwareName = spec.Name
	t.SoftwareVersion = spec.Version
	t.Patch = spec.Patches != ""
	t.Supplemental = spec.Supplemental
	e, err := swid.NewEntity(spec.Vendor, swid.RoleTagCreator, swid.RoleSoftwareCreator)
	if err != nil {
		return nil, err
	}
	e.RegID = spec.VendorRegID
	t.Entities = swid.Entities{*e}
	t.SoftwareMetas = &swid.SoftwareMetas{{Product: spec.Product, ColloquialVersion: spec.Colloquial, Revision: spec.Revision, Edition: spec.Edition}}
	var links swid.Links
	for _, s := range spec.Supersedes {
		links = append(links, swid.Link{Href: "swid:" + s, Rel: *swid.NewRel(swid.RelSupersedes)})
	}
	if spec.Patches != "" {
		links = append(links, swid.Link{Href: "swid:" + spec.Patches, Rel: *swid.NewRel(swid.RelPatches)})
	}
	if len(links) > 0 {
		t.Links = &links
	}
	if len(spec.Files) > 0 {
		var files swid.Files
		for _, f := range spec.Files {
			size := int64(len(f.Content))
			for _, a := range HashAlgs {
				var h swid.HashEntry
				if err := h.Set(namedInfo[a], a.Sum(f.Content)); err != nil {
					return nil, err
				}
				files = append(files, swid.File{FileSystemItem: swid.FileSystemItem{FsName: f.Path}, Size: &size, Hash: &h})
			}
		}
		t.Payload = &swid.Payload{}
		t.Payload.Files = &files
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	return t, nil
}

// LinkedTags returns the tag-ids t links to with rel ("supersedes",
// "patches", ...). Hrefs must be "swid:<tag-id>" (RFC 9393 §2.7).
func (t *Tag) LinkedTags(rel string) ([]string, error) {
	if t.Links == nil {
		return nil, nil
	}
	var out []string
	for _, l := range *t.Links {
		if l.Rel.String() != rel {
			continue
		}
		if len(l.Href) < 6 || l.Href[:5] != "swid:" {
			return nil, fmt.Errorf("%s link href %q is not swid:<tag-id>", rel, l.Href)
		}
		out = append(out, l.Href[5:])
	}
	return out, nil
}

// SupportRIMMatches checks that content is the support RIM the base RIM t
// lists at path, in every hash algorithm t gives for it.
func (t *Tag) SupportRIMMatches(path string, content []byte) error {
	n := 0
	for _, f := range t.Files() {
		if f.Path != path || !f.Alg.IsHash() {
			continue
		}
		n++
		if got := f.Alg.Sum(content); string(got) != string(f.Hash) {
			return fmt.Errorf("%w: support RIM %s has %v %x, base RIM lists %x", ErrProfile, path, f.Alg, got, f.Hash)
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: base RIM lists no %s", ErrProfile, path)
	}
	return nil
}
