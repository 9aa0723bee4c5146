package netconf

import (
	"strconv"
	"time"

	"github.com/openriv/riv/agent/inventory"
)

// NSSoftwareInventory is the namespace of the project's own
// riv-software-inventory module (yang/, docs/software-inventory.md).
const NSSoftwareInventory = "urn:openriv:params:xml:ns:yang:riv-software-inventory"

// renderedInventory is an inventory's tree, built once: an inventory does
// not change once loaded (a reload makes a new one), and rendering encodes
// every RIM in base64.
type renderedInventory struct {
	inv  *inventory.Inventory
	node *Node
}

// softwareInventory is the riv-software-inventory state of the inventory
// the server serves now; nil when it serves none.
func (s *Server) softwareInventory() *Node {
	if s.cfg.Inventory == nil {
		return nil
	}
	inv := s.cfg.Inventory()
	if r := s.inventory.Load(); r != nil && r.inv == inv {
		return r.node
	}
	// Two requests racing after a reload may both render it; the trees
	// are the same and neither is changed once built (filters copy).
	n := inventoryTree(inv)
	s.inventory.Store(&renderedInventory{inv: inv, node: n})
	return n
}

// Modified is when the state the server serves last changed: its start,
// or the load of the inventory it serves now when that is later.
func (s *Server) Modified() time.Time {
	t := s.stats.start
	if s.cfg.Inventory != nil {
		if inv := s.cfg.Inventory(); inv != nil && inv.Loaded.After(t) {
			t = inv.Loaded
		}
	}
	return t
}

func boolLeaf(name string, v bool) *Node { return Leaf(name, strconv.FormatBool(v)) }

// inventoryTree renders inv as riv-software-inventory's
// software-inventory container (an empty one for nil).
func inventoryTree(inv *inventory.Inventory) *Node {
	root := El("software-inventory").InNS(NSSoftwareInventory)
	if inv == nil {
		return root
	}
	for _, c := range inv.Components {
		e := El("component", Leaf("tag-id", c.TagID), Leaf("tag-version", strconv.Itoa(c.TagVersion)), Leaf("software-name", c.SoftwareName))
		if c.SoftwareVersion != "" {
			e.Add(Leaf("software-version", c.SoftwareVersion))
		}
		if c.VersionScheme != "" {
			e.Add(Leaf("version-scheme", c.VersionScheme))
		}
		e.Add(boolLeaf("corpus", c.Corpus), boolLeaf("patch", c.Patch), boolLeaf("supplemental", c.Supplemental))
		if m := c.Measurement; m != nil {
			rm := El("reference-measurement")
			if m.PayloadType != nil {
				switch *m.PayloadType {
				case 0:
					rm.Add(Leaf("payload-type", "direct"))
				case 1:
					rm.Add(Leaf("payload-type", "indirect"))
				case 2:
					rm.Add(Leaf("payload-type", "hybrid"))
				}
			}
			for _, l := range []struct{ name, v string }{{"binding-spec-name", m.BindingSpecName}, {"binding-spec-version", m.BindingSpecVersion}} {
				if l.v != "" {
					rm.Add(Leaf(l.name, l.v))
				}
			}
			rm.Add(Leaf("platform-manufacturer-id", strconv.FormatUint(m.PlatformManufacturerID, 10)))
			for _, l := range []struct{ name, v string }{{"platform-manufacturer-name", m.PlatformManufacturerName}, {"platform-model-name", m.PlatformModelName}} {
				if l.v != "" {
					rm.Add(Leaf(l.name, l.v))
				}
			}
			e.Add(rm)
		}
		for _, en := range c.Entities {
			n := El("entity", Leaf("entity-name", en.Name))
			if en.RegID != "" {
				n.Add(Leaf("reg-id", en.RegID))
			}
			for _, r := range en.Roles {
				n.Add(Leaf("role", r))
			}
			e.Add(n)
		}
		for _, l := range c.Links {
			e.Add(El("link", Leaf("href", l.Href), Leaf("rel", l.Rel)))
		}
		if len(c.Files) > 0 {
			p := El("payload")
			for _, f := range c.Files {
				fn := El("file", Leaf("path", f.Path))
				if f.Size > 0 {
					fn.Add(Leaf("size", strconv.FormatInt(f.Size, 10)))
				}
				for _, h := range f.Hashes {
					if id := hashIdentity(h.Alg); id != "" {
						fn.Add(El("hash", identity("algorithm", "taa", NSTAA, id), Leaf("value", b64(h.Value))))
					}
				}
				p.Add(fn)
			}
			e.Add(p)
		}
		for i := range c.RIMs {
			r := &c.RIMs[i]
			e.Add(El("rim", Leaf("digest", r.DigestHex()), Leaf("media-type", r.MediaType),
				Leaf("size", strconv.Itoa(len(r.Content))), Leaf("file-name", r.FileName), Leaf("content", b64(r.Content))))
		}
		root.Add(e)
	}
	return root
}
