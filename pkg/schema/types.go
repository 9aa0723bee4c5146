package schema

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/openconfig/goyang/pkg/yang"
)

// Type is a resolved leaf or leaf-list type: a built-in type with every
// restriction of its derivation chain (RFC 7950 §9: a derived type's
// restrictions narrow its base's, so all of them must hold).
type Type struct {
	Kind string // the built-in type: int8 ... uint64, decimal64, string, boolean, enumeration, bits, binary, leafref, identityref, empty, union, instance-identifier
	Name string // the type as written (a typedef name, or Kind)

	ranges   []restriction[rng]
	lengths  []restriction[lrng]
	patterns []*pattern

	Enums          []Enum
	Bits           []Bit
	FractionDigits int
	Bases          []*Identity
	// Path is a leafref's path and Target the leaf it refers to.
	Path    string
	Target  *Node
	pathMod *Module
	Union   []*Type
	// Default is the default value a typedef gives.
	Default string
}

// Enum is one enumeration value.
type Enum struct {
	Name  string
	Value int64
}

// Bit is one bits value.
type Bit struct {
	Name     string
	Position uint32
}

type restriction[T any] struct {
	parts            []T
	errMsg, errApTag string
}

type rng struct{ min, max *big.Rat }
type lrng struct{ min, max uint64 }

type pattern struct {
	re               *regexp.Regexp
	invert           bool
	src              string
	errMsg, errApTag string
}

// ValueError is a value that does not fit its type, with the
// error-message and error-app-tag of the violated restriction if it has
// them (RFC 7950 §8.3.1).
type ValueError struct {
	Msg, AppTag string
}

func (e *ValueError) Error() string { return e.Msg }

var intBounds = map[string][2]string{
	"int8": {"-128", "127"}, "int16": {"-32768", "32767"}, "int32": {"-2147483648", "2147483647"},
	"int64": {"-9223372036854775808", "9223372036854775807"}, "uint8": {"0", "255"}, "uint16": {"0", "65535"},
	"uint32": {"0", "4294967295"}, "uint64": {"0", "18446744073709551615"},
}

var builtins = map[string]bool{"decimal64": true, "string": true, "boolean": true, "enumeration": true, "bits": true, "binary": true,
	"leafref": true, "identityref": true, "empty": true, "union": true, "instance-identifier": true}

func isBuiltin(name string) bool { _, ok := intBounds[name]; return ok || builtins[name] }

// maxTypeDepth bounds typedef chains (a loop is an error).
const maxTypeDepth = 32

func (c *compiler) resolveType(st *yang.Statement, sc *scope, depth int) (*Type, error) {
	if depth > maxTypeDepth {
		return nil, errors.New("typedefs nest too deep (a loop?)")
	}
	name := st.Argument
	var t *Type
	if isBuiltin(name) {
		t = &Type{Kind: name, Name: name}
	} else {
		td, tsc, ok := sc.typedef(name)
		if !ok {
			return nil, fmt.Errorf("type %s not found", name)
		}
		ts := subs(td, "type")
		if len(ts) != 1 {
			return nil, fmt.Errorf("typedef %s has %d types", name, len(ts))
		}
		base, err := c.resolveType(ts[0], newScope(tsc.mod, tsc, td), depth+1)
		if err != nil {
			return nil, fmt.Errorf("typedef %s: %w", name, err)
		}
		cp := *base
		t = &cp
		t.Name = name
		if d := sub(td, "default"); d != "" {
			t.Default = d
		}
	}
	if err := c.restrict(t, st, sc, depth); err != nil {
		return nil, fmt.Errorf("type %s: %w", name, err)
	}
	return t, nil
}

// restrict applies the restrictions written under a type statement.
func (c *compiler) restrict(t *Type, st *yang.Statement, sc *scope, depth int) error {
	// A derived enumeration or bits type lists the values it keeps (RFC
	// 7950 §9.6.3, §9.7.3).
	restartEnums, restartBits := len(t.Enums) > 0, len(t.Bits) > 0
	for _, s := range st.SubStatements() {
		switch s.Keyword {
		case "range":
			rs, err := parseRange(s.Argument, t)
			if err != nil {
				return err
			}
			t.ranges = append(append([]restriction[rng](nil), t.ranges...), restriction[rng]{rs, sub(s, "error-message"), sub(s, "error-app-tag")})
		case "length":
			ls, err := parseLength(s.Argument)
			if err != nil {
				return err
			}
			t.lengths = append(append([]restriction[lrng](nil), t.lengths...), restriction[lrng]{ls, sub(s, "error-message"), sub(s, "error-app-tag")})
		case "pattern":
			re, err := xsdRegexp(s.Argument)
			if err != nil {
				return fmt.Errorf("pattern %q: %w", s.Argument, err)
			}
			p := &pattern{re: re, src: s.Argument, errMsg: sub(s, "error-message"), errApTag: sub(s, "error-app-tag"), invert: sub(s, "modifier") == "invert-match"}
			t.patterns = append(append([]*pattern(nil), t.patterns...), p)
		case "fraction-digits":
			n, err := strconv.Atoi(s.Argument)
			if err != nil || n < 1 || n > 18 {
				return fmt.Errorf("fraction-digits %q", s.Argument)
			}
			t.FractionDigits = n
		case "enum":
			if !c.ifFeature(s, sc.mod) {
				continue
			}
			if restartEnums {
				t.Enums, restartEnums = nil, false
			}
			v := int64(len(t.Enums))
			if len(t.Enums) > 0 {
				v = t.Enums[len(t.Enums)-1].Value + 1
			}
			if a := sub(s, "value"); a != "" {
				n, err := strconv.ParseInt(a, 10, 32)
				if err != nil {
					return fmt.Errorf("enum %s value %q", s.Argument, a)
				}
				v = n
			}
			t.Enums = append(t.Enums, Enum{s.Argument, v})
		case "bit":
			if !c.ifFeature(s, sc.mod) {
				continue
			}
			if restartBits {
				t.Bits, restartBits = nil, false
			}
			pos := uint32(len(t.Bits))
			if len(t.Bits) > 0 {
				pos = t.Bits[len(t.Bits)-1].Position + 1
			}
			if a := sub(s, "position"); a != "" {
				n, err := strconv.ParseUint(a, 10, 32)
				if err != nil {
					return fmt.Errorf("bit %s position %q", s.Argument, a)
				}
				pos = uint32(n)
			}
			t.Bits = append(t.Bits, Bit{s.Argument, pos})
		case "base":
			bm, name := qname(sc.mod, s.Argument)
			if bm == nil || bm.identities[name] == nil {
				return fmt.Errorf("base identity %s not found", s.Argument)
			}
			t.Bases = append(t.Bases, bm.identities[name])
		case "path":
			t.Path = s.Argument
			t.pathMod = sc.mod
		case "type":
			if t.Kind != "union" {
				return errors.New("a type inside a non-union type")
			}
			m, err := c.resolveType(s, sc, depth+1)
			if err != nil {
				return err
			}
			t.Union = append(t.Union, m)
		}
	}
	return nil
}

// parseRange parses a range expression for t's built-in type.
func parseRange(arg string, t *Type) ([]rng, error) {
	lo, hi := typeBounds(t)
	var out []rng
	for _, part := range strings.Split(arg, "|") {
		a, b, two := strings.Cut(strings.TrimSpace(part), "..")
		parse := func(s string) (*big.Rat, error) {
			switch s = strings.TrimSpace(s); s {
			case "min":
				return lo, nil
			case "max":
				return hi, nil
			}
			r, ok := new(big.Rat).SetString(s)
			if !ok {
				return nil, fmt.Errorf("range bound %q", s)
			}
			return r, nil
		}
		mn, err := parse(a)
		if err != nil {
			return nil, err
		}
		mx := mn
		if two {
			if mx, err = parse(b); err != nil {
				return nil, err
			}
		}
		out = append(out, rng{mn, mx})
	}
	return out, nil
}

func typeBounds(t *Type) (*big.Rat, *big.Rat) {
	if b, ok := intBounds[t.Kind]; ok {
		lo, _ := new(big.Rat).SetString(b[0])
		hi, _ := new(big.Rat).SetString(b[1])
		return lo, hi
	}
	// decimal64: the int64 range scaled by fraction-digits.
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.FractionDigits)), nil))
	lo, _ := new(big.Rat).SetString(intBounds["int64"][0])
	hi, _ := new(big.Rat).SetString(intBounds["int64"][1])
	return lo.Quo(lo, scale), hi.Quo(hi, scale)
}

func parseLength(arg string) ([]lrng, error) {
	var out []lrng
	for _, part := range strings.Split(arg, "|") {
		a, b, two := strings.Cut(strings.TrimSpace(part), "..")
		parse := func(s string) (uint64, error) {
			switch s = strings.TrimSpace(s); s {
			case "min":
				return 0, nil
			case "max":
				return ^uint64(0), nil
			}
			return strconv.ParseUint(s, 10, 64)
		}
		mn, err := parse(a)
		if err != nil {
			return nil, fmt.Errorf("length %q", arg)
		}
		mx := mn
		if two {
			if mx, err = parse(b); err != nil {
				return nil, fmt.Errorf("length %q", arg)
			}
		}
		out = append(out, lrng{mn, mx})
	}
	return out, nil
}

// xsdRegexp translates a YANG pattern (an XML Schema regular expression,
// RFC 7950 §9.4.5, implicitly anchored) into Go's RE2: ^ and $ are
// literal there, \i and \c are XML name characters. Character-class
// subtraction and \p{Is...} blocks have no RE2 form and are refused.
func xsdRegexp(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`^(?:`)
	inClass := false
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == '\\' && i+1 < len(p):
			n := p[i+1]
			i++
			switch n {
			case 'i':
				b.WriteString(`[_:A-Za-z\x{C0}-\x{2FF}\x{370}-\x{1FFF}]`)
			case 'c':
				b.WriteString(`[-._:A-Za-z0-9\x{B7}\x{C0}-\x{2FF}\x{300}-\x{1FFF}]`)
			case 'I', 'C':
				return nil, fmt.Errorf(`\%c is not supported`, n)
			case 'p', 'P':
				if strings.HasPrefix(p[i+1:], "{Is") {
					return nil, errors.New(`Unicode blocks (\p{Is...}) are not supported`)
				}
				b.WriteByte('\\')
				b.WriteByte(n)
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
			}
		case inClass && ch == '-' && i+1 < len(p) && p[i+1] == '[':
			return nil, errors.New("character class subtraction is not supported")
		case ch == '[' && !inClass:
			inClass = true
			b.WriteByte(ch)
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
		case ch == ']' && inClass:
			inClass = false
			b.WriteByte(ch)
		case !inClass && (ch == '^' || ch == '$'):
			b.WriteByte('\\')
			b.WriteByte(ch)
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteString(`)$`)
	return regexp.Compile(b.String())
}

// leafrefs resolves the targets of t's leafrefs (in unions too).
func (c *compiler) leafrefs(n *Node, t *Type) error {
	switch t.Kind {
	case "leafref":
		if t.Target != nil {
			return nil
		}
		target, err := c.pathTarget(n, t.Path, t.pathMod)
		if err != nil {
			return fmt.Errorf("leafref %s: %w", t.Path, err)
		}
		t.Target = target
		if target.Type == nil {
			return fmt.Errorf("leafref %s: target %s has no type", t.Path, target.Name)
		}
		return c.leafrefs(target, target.Type)
	case "union":
		for _, m := range t.Union {
			if err := c.leafrefs(n, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// pathTarget follows a leafref path (RFC 7950 §9.9.2) in the schema,
// ignoring its predicates.
func (c *compiler) pathTarget(from *Node, path string, m *Module) (*Node, error) {
	var segs []string
	depth := 0
	for _, r := range path {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		}
		if depth == 0 && r != ']' {
			if len(segs) == 0 {
				segs = append(segs, "")
			}
			if r == '/' {
				segs = append(segs, "")
				continue
			}
			segs[len(segs)-1] += string(r)
		}
	}
	var cur *Node
	var cands []*Node
	if strings.HasPrefix(strings.TrimSpace(path), "/") {
		cands = append(append([]*Node(nil), c.set.Top...), c.set.RPCs...)
		segs = segs[1:]
	} else {
		cur = from
	}
	for _, seg := range segs {
		seg = strings.TrimSpace(seg)
		if seg == "" {
			continue
		}
		if seg == ".." {
			cur = dataParent(cur)
			if cur == nil {
				return nil, errors.New("path goes above the root")
			}
			cands = nil
			continue
		}
		sm, name := qname(m, seg)
		if sm == nil {
			return nil, fmt.Errorf("unknown prefix in %s", seg)
		}
		var next *Node
		if cur == nil {
			next = find(cands, sm.Namespace, name)
		} else {
			next = cur.Child(sm.Namespace, name)
		}
		if next == nil {
			return nil, fmt.Errorf("no node %s", seg)
		}
		cur = next
	}
	if cur == nil || (cur.Kind != Leaf && cur.Kind != LeafList) {
		return nil, errors.New("does not lead to a leaf")
	}
	return cur, nil
}

// dataParent is the parent data node (skipping choices and cases).
func dataParent(n *Node) *Node {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Kind != Choice && p.Kind != Case {
			return p
		}
	}
	return nil
}

// Check validates v, a value in the XML encoding; resolve maps a prefix
// to its namespace ("" is the default namespace) for identityrefs. It
// returns the canonical value (identities as "module:name").
func (t *Type) Check(s *Set, v string, resolve func(prefix string) (string, bool)) (string, error) {
	switch t.Kind {
	case "string":
		return v, t.checkString(v)
	case "binary":
		// Strictly RFC 4648 §4: no whitespace anywhere (Go's decoder
		// skips newlines), padding required — as libyang refuses too.
		if strings.ContainsAny(v, " \t\r\n") {
			return "", &ValueError{Msg: "not base64 (RFC 4648 §4): whitespace in the value"}
		}
		b, err := base64.StdEncoding.Strict().DecodeString(v)
		if err != nil {
			return "", &ValueError{Msg: "not base64 (RFC 4648 §4)"}
		}
		return v, t.checkLength(uint64(len(b)))
	case "boolean":
		if v = strings.TrimSpace(v); v != "true" && v != "false" {
			return "", &ValueError{Msg: fmt.Sprintf("%q is not true or false", short(v))}
		}
		return v, nil
	case "empty":
		if strings.TrimSpace(v) != "" {
			return "", &ValueError{Msg: "an empty leaf has no value"}
		}
		return "", nil
	case "enumeration":
		v = strings.TrimSpace(v)
		for _, e := range t.Enums {
			if e.Name == v {
				return v, nil
			}
		}
		return "", &ValueError{Msg: fmt.Sprintf("%q is not one of the enumeration's values", short(v))}
	case "bits":
		seen := map[string]bool{}
		for _, f := range strings.Fields(v) {
			ok := false
			for _, b := range t.Bits {
				ok = ok || b.Name == f
			}
			if !ok || seen[f] {
				return "", &ValueError{Msg: fmt.Sprintf("%q is not a bit of the type, or repeated", short(f))}
			}
			seen[f] = true
		}
		return strings.Join(strings.Fields(v), " "), nil
	case "identityref":
		id, err := t.identity(s, strings.TrimSpace(v), resolve)
		if err != nil {
			return "", err
		}
		return id.String(), nil
	case "leafref":
		if t.Target == nil || t.Target.Type == nil {
			return v, nil
		}
		return t.Target.Type.Check(s, v, resolve)
	case "union":
		for _, m := range t.Union {
			if c, err := m.Check(s, v, resolve); err == nil {
				return c, nil
			}
		}
		return "", &ValueError{Msg: fmt.Sprintf("%q matches no member of the union", short(v))}
	case "instance-identifier":
		if !strings.HasPrefix(strings.TrimSpace(v), "/") {
			return "", &ValueError{Msg: "an instance-identifier is an absolute path"}
		}
		return strings.TrimSpace(v), nil
	case "decimal64":
		return t.checkDecimal(strings.TrimSpace(v))
	}
	if _, ok := intBounds[t.Kind]; ok {
		return t.checkInt(strings.TrimSpace(v))
	}
	return "", &ValueError{Msg: "type " + t.Kind + " is not supported"}
}

// identity resolves an identityref value and checks it derives from
// every base (RFC 7950 §9.10.2).
func (t *Type) identity(s *Set, v string, resolve func(string) (string, bool)) (*Identity, error) {
	prefix, name, ok := strings.Cut(v, ":")
	if !ok {
		prefix, name = "", v
	}
	ns, known := resolve(prefix)
	if !known {
		return nil, &ValueError{Msg: fmt.Sprintf("identity %q: prefix %q is not declared where the value is (RFC 7950 §9.10.3)", short(v), short(prefix))}
	}
	m := s.ModuleByNS(ns)
	if m == nil {
		return nil, &ValueError{Msg: fmt.Sprintf("identity %q: namespace %q is not a module this server implements", short(v), short(ns))}
	}
	id := m.identities[name]
	if id == nil {
		return nil, &ValueError{Msg: fmt.Sprintf("identity %q is not defined in %s", short(v), m.Name)}
	}
	if !m.Implemented {
		// An identity of a module the server only imports is not one it
		// knows as a value (libyang refuses it the same way).
		return nil, &ValueError{Msg: fmt.Sprintf("identity %q is of %s, which this server does not implement", short(v), m.Name)}
	}
	for _, b := range t.Bases {
		if !id.DerivedFrom(b) {
			return nil, &ValueError{Msg: fmt.Sprintf("identity %s is not derived from %s", id, b)}
		}
	}
	return id, nil
}

func (t *Type) checkString(v string) error {
	if err := t.checkLength(uint64(utf8.RuneCountInString(v))); err != nil {
		return err
	}
	for _, p := range t.patterns {
		if p.re.MatchString(v) == p.invert {
			msg := p.errMsg
			if msg == "" {
				msg = fmt.Sprintf("%q does not match the pattern %q", v, p.src)
			}
			return &ValueError{Msg: msg, AppTag: p.errApTag}
		}
	}
	return nil
}

func (t *Type) checkLength(n uint64) error {
	for _, r := range t.lengths {
		ok := false
		for _, p := range r.parts {
			ok = ok || n >= p.min && n <= p.max
		}
		if !ok {
			msg := r.errMsg
			if msg == "" {
				msg = fmt.Sprintf("length %d is out of the allowed lengths", n)
			}
			return &ValueError{Msg: msg, AppTag: r.errApTag}
		}
	}
	return nil
}

// checkInt accepts the lexical form of RFC 7950 §9.2.1: an optional sign
// and decimal digits.
func (t *Type) checkInt(v string) (string, error) {
	d := strings.TrimPrefix(v, "+")
	neg := strings.HasPrefix(d, "-")
	digits := strings.TrimPrefix(d, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", &ValueError{Msg: fmt.Sprintf("%q is not an integer", short(v))}
	}
	// No YANG integer has more than 20 digits: a longer one is out of
	// range without the quadratic big-number parse a megabyte of
	// digits would cost.
	if sig := strings.TrimLeft(digits, "0"); len(sig) > 20 {
		return "", &ValueError{Msg: fmt.Sprintf("%s is out of the range of %s", short(v), t.Kind)}
	}
	n, _ := new(big.Int).SetString(digits, 10)
	if neg {
		n.Neg(n)
	}
	r := new(big.Rat).SetInt(n)
	lo, hi := typeBounds(t)
	if r.Cmp(lo) < 0 || r.Cmp(hi) > 0 {
		return "", &ValueError{Msg: fmt.Sprintf("%s is out of the range of %s", short(v), t.Kind)}
	}
	if err := t.checkRange(r, v); err != nil {
		return "", err
	}
	return n.String(), nil
}

func (t *Type) checkDecimal(v string) (string, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(v, "+"), "-")
	ip, fp, _ := strings.Cut(s, ".")
	if ip == "" || strings.Trim(ip, "0123456789") != "" || strings.Trim(fp, "0123456789") != "" || len(fp) > t.FractionDigits || strings.HasSuffix(v, ".") {
		return "", &ValueError{Msg: fmt.Sprintf("%q is not a decimal64 with %d fraction digits", short(v), t.FractionDigits)}
	}
	if sig := strings.TrimLeft(ip, "0"); len(sig) > 19 {
		return "", &ValueError{Msg: fmt.Sprintf("%s is out of the range of decimal64", short(v))}
	}
	r, ok := new(big.Rat).SetString(v)
	if !ok {
		return "", &ValueError{Msg: fmt.Sprintf("%q is not a decimal64", short(v))}
	}
	lo, hi := typeBounds(t)
	if r.Cmp(lo) < 0 || r.Cmp(hi) > 0 {
		return "", &ValueError{Msg: fmt.Sprintf("%s is out of the range of decimal64", short(v))}
	}
	if err := t.checkRange(r, v); err != nil {
		return "", err
	}
	return r.FloatString(t.FractionDigits), nil
}

func (t *Type) checkRange(r *big.Rat, v string) error {
	for _, rs := range t.ranges {
		ok := false
		for _, p := range rs.parts {
			ok = ok || r.Cmp(p.min) >= 0 && r.Cmp(p.max) <= 0
		}
		if !ok {
			msg := rs.errMsg
			if msg == "" {
				msg = fmt.Sprintf("%s is out of the allowed range", v)
			}
			return &ValueError{Msg: msg, AppTag: rs.errApTag}
		}
	}
	return nil
}

// IsNumber reports whether RFC 7951 encodes the type's values as JSON
// numbers (8-, 16- and 32-bit integers; §6.1).
func (t *Type) IsNumber() bool {
	switch t.Kind {
	case "int8", "int16", "int32", "uint8", "uint16", "uint32":
		return true
	case "leafref":
		return t.Target != nil && t.Target.Type != nil && t.Target.Type.IsNumber()
	}
	return false
}

// short cuts a client's value for an error message: the message names it,
// it need not echo a megabyte back.
func short(v string) string {
	const max = 64
	if len(v) <= max {
		return v
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + fmt.Sprintf("... (%d bytes)", len(v))
}
