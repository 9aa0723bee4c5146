package schema

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The XPath 1.0 of must and when (RFC 7950 §6.4, §10): location paths
// (child, parent, self, descendant-or-self, ancestor axes; ., .., //,
// name tests with prefixes, *), predicates, the operators, and the
// functions must and when expressions use in practice — the core
// count, not, true, false, boolean, string, number, concat, contains,
// starts-with, string-length, normalize-space, local-name, name,
// position, last, and YANG's current, derived-from and
// derived-from-or-self. An expression with anything else fails to
// compile, so a module set that needs more is refused when it loads
// rather than misjudged at run time.

type expr interface{}

type (
	binary struct {
		op   string
		l, r expr
	}
	negate  struct{ e expr }
	literal struct{ s string }
	number  struct{ f float64 }
	call    struct {
		name string
		args []expr
	}
	// path is a location path, absolute or relative to filter.
	path struct {
		abs    bool
		filter expr // a primary expression the steps continue, or nil
		steps  []step
	}
	step struct {
		axis   string // child, parent, self, descendant-or-self, ancestor, descendant
		prefix string
		name   string // "*" for any, "" with kind for node()/text()
		kind   string // "node" or "text" for node-type tests
		preds  []expr
	}
	filtered struct {
		e     expr
		preds []expr
	}
)

type tok struct {
	kind string // "name", "op", "lit", "num", "(", ")", "[", "]", ",", "/", "//", ".", "..", "@", "::", "*"
	s    string
}

func lex(s string) ([]tok, error) {
	var out []tok
	i := 0
	prevAllowsOp := func() bool {
		if len(out) == 0 {
			return false
		}
		p := out[len(out)-1]
		switch p.kind {
		case "@", "::", "(", "[", ",", "op", "/", "//":
			return false
		}
		return true
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, errors.New("unterminated literal")
			}
			out = append(out, tok{"lit", s[i+1 : i+1+j]})
			i += j + 2
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			out = append(out, tok{"num", s[i:j]})
			i = j
		case c == '.':
			if strings.HasPrefix(s[i:], "..") {
				out = append(out, tok{"..", ".."})
				i += 2
			} else {
				out = append(out, tok{".", "."})
				i++
			}
		case c == '/':
			if strings.HasPrefix(s[i:], "//") {
				out = append(out, tok{"//", "//"})
				i += 2
			} else {
				out = append(out, tok{"/", "/"})
				i++
			}
		case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == '@':
			out = append(out, tok{string(c), string(c)})
			i++
		case c == ':' && strings.HasPrefix(s[i:], "::"):
			out = append(out, tok{"::", "::"})
			i += 2
		case c == '!' && strings.HasPrefix(s[i:], "!="), c == '<' || c == '>':
			op := string(c)
			if i+1 < len(s) && s[i+1] == '=' {
				op += "="
			}
			out = append(out, tok{"op", op})
			i += len(op)
		case c == '=' || c == '+' || c == '-' || c == '|':
			out = append(out, tok{"op", string(c)})
			i++
		case c == '*':
			if prevAllowsOp() {
				out = append(out, tok{"op", "*"})
			} else {
				out = append(out, tok{"*", "*"})
			}
			i++
		case isNameStart(c):
			j := i
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			// prefix:name or prefix:*
			if j+1 < len(s) && s[j] == ':' && s[j+1] != ':' {
				if s[j+1] == '*' {
					j += 2
				} else if isNameStart(s[j+1]) {
					j++
					for j < len(s) && isNameChar(s[j]) {
						j++
					}
				}
			}
			name := s[i:j]
			if prevAllowsOp() && (name == "and" || name == "or" || name == "div" || name == "mod") {
				out = append(out, tok{"op", name})
			} else {
				out = append(out, tok{"name", name})
			}
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q", c)
		}
	}
	return out, nil
}

func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isNameChar(c byte) bool {
	return isNameStart(c) || c >= '0' && c <= '9' || c == '-' || c == '.'
}

type xparser struct {
	toks []tok
	i    int
}

func (p *xparser) peek() tok {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return tok{}
}

func (p *xparser) next() tok { t := p.peek(); p.i++; return t }

func (p *xparser) isOp(ops ...string) bool {
	t := p.peek()
	if t.kind != "op" {
		return false
	}
	for _, o := range ops {
		if t.s == o {
			return true
		}
	}
	return false
}

var functions = map[string]bool{"count": true, "not": true, "true": true, "false": true, "boolean": true, "string": true, "number": true,
	"concat": true, "contains": true, "starts-with": true, "string-length": true, "normalize-space": true, "local-name": true, "name": true,
	"position": true, "last": true, "current": true, "derived-from": true, "derived-from-or-self": true}

// parseXPath compiles an expression of the supported subset.
func parseXPath(s string) (expr, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &xparser{toks: toks}
	e, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.peek().s)
	}
	return e, nil
}

var levels = [][]string{{"or"}, {"and"}, {"=", "!="}, {"<", ">", "<=", ">="}, {"+", "-"}, {"*", "div", "mod"}}

func (p *xparser) binary(level int) (expr, error) {
	if level == len(levels) {
		return p.unary()
	}
	l, err := p.binary(level + 1)
	if err != nil {
		return nil, err
	}
	for p.isOp(levels[level]...) {
		op := p.next().s
		r, err := p.binary(level + 1)
		if err != nil {
			return nil, err
		}
		l = binary{op, l, r}
	}
	return l, nil
}

func (p *xparser) unary() (expr, error) {
	if p.isOp("-") {
		p.next()
		e, err := p.unary()
		return negate{e}, err
	}
	l, err := p.pathExpr()
	if err != nil {
		return nil, err
	}
	for p.isOp("|") {
		p.next()
		r, err := p.pathExpr()
		if err != nil {
			return nil, err
		}
		l = binary{"|", l, r}
	}
	return l, nil
}

func (p *xparser) pathExpr() (expr, error) {
	t := p.peek()
	switch {
	case t.kind == "/" || t.kind == "//":
		path := &path{abs: true}
		if t.kind == "//" {
			p.next()
			path.steps = append(path.steps, step{axis: "descendant-or-self", kind: "node"})
			return path, p.relative(path)
		}
		p.next()
		if n := p.peek(); n.kind == "name" || n.kind == "*" || n.kind == "." || n.kind == ".." || n.kind == "@" {
			return path, p.relative(path)
		}
		return path, nil
	case t.kind == "lit" || t.kind == "num" || t.kind == "(" || t.kind == "name" && p.i+1 < len(p.toks) && p.toks[p.i+1].kind == "(" && !isNodeType(t.s):
		prim, err := p.primary()
		if err != nil {
			return nil, err
		}
		var preds []expr
		for p.peek().kind == "[" {
			pr, err := p.predicate()
			if err != nil {
				return nil, err
			}
			preds = append(preds, pr)
		}
		if len(preds) > 0 {
			prim = filtered{prim, preds}
		}
		if n := p.peek(); n.kind == "/" || n.kind == "//" {
			path := &path{filter: prim}
			return path, p.continueSteps(path)
		}
		return prim, nil
	default:
		path := &path{}
		return path, p.relative(path)
	}
}

func isNodeType(s string) bool { return s == "node" || s == "text" }

func (p *xparser) relative(path *path) error {
	if err := p.step(path); err != nil {
		return err
	}
	return p.continueSteps(path)
}

func (p *xparser) continueSteps(path *path) error {
	for {
		switch p.peek().kind {
		case "/":
			p.next()
		case "//":
			p.next()
			path.steps = append(path.steps, step{axis: "descendant-or-self", kind: "node"})
		default:
			return nil
		}
		if err := p.step(path); err != nil {
			return err
		}
	}
}

func (p *xparser) step(path *path) error {
	t := p.next()
	var s step
	switch t.kind {
	case ".":
		path.steps = append(path.steps, step{axis: "self", kind: "node"})
		return nil
	case "..":
		path.steps = append(path.steps, step{axis: "parent", kind: "node"})
		return nil
	case "@":
		return errors.New("attributes are not supported")
	case "*":
		s = step{axis: "child", name: "*"}
	case "name":
		axis := "child"
		if p.peek().kind == "::" {
			axis = t.s
			switch axis {
			case "child", "parent", "self", "descendant-or-self", "descendant", "ancestor", "ancestor-or-self":
			default:
				return fmt.Errorf("axis %s is not supported", axis)
			}
			p.next()
			t = p.next()
			if t.kind == "*" {
				s = step{axis: axis, name: "*"}
				break
			}
			if t.kind != "name" {
				return errors.New("a name test must follow an axis")
			}
		}
		if isNodeType(t.s) && p.peek().kind == "(" {
			p.next()
			if p.next().kind != ")" {
				return errors.New("node type test takes no arguments")
			}
			s = step{axis: axis, kind: t.s}
			break
		}
		prefix, name, ok := strings.Cut(t.s, ":")
		if !ok {
			prefix, name = "", t.s
		}
		s = step{axis: axis, prefix: prefix, name: name}
	default:
		return fmt.Errorf("unexpected %q in a path", t.s)
	}
	for p.peek().kind == "[" {
		pr, err := p.predicate()
		if err != nil {
			return err
		}
		s.preds = append(s.preds, pr)
	}
	path.steps = append(path.steps, s)
	return nil
}

func (p *xparser) predicate() (expr, error) {
	p.next() // [
	e, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if p.next().kind != "]" {
		return nil, errors.New("missing ]")
	}
	return e, nil
}

func (p *xparser) primary() (expr, error) {
	t := p.next()
	switch t.kind {
	case "lit":
		return literal{t.s}, nil
	case "num":
		f, err := strconv.ParseFloat(t.s, 64)
		return number{f}, err
	case "(":
		e, err := p.binary(0)
		if err != nil {
			return nil, err
		}
		if p.next().kind != ")" {
			return nil, errors.New("missing )")
		}
		return e, nil
	case "name":
		if !functions[t.s] {
			return nil, fmt.Errorf("function %s() is not supported", t.s)
		}
		p.next() // (
		c := call{name: t.s}
		if p.peek().kind == ")" {
			p.next()
			return c, nil
		}
		for {
			a, err := p.binary(0)
			if err != nil {
				return nil, err
			}
			c.args = append(c.args, a)
			switch p.next().kind {
			case ",":
				continue
			case ")":
				return c, nil
			default:
				return nil, errors.New("missing ) after arguments")
			}
		}
	}
	return nil, fmt.Errorf("unexpected %q", t.s)
}

// evaluation

// xctx is the evaluation context of one expression.
type xctx struct {
	set     *Set
	mod     *Module // resolves prefixes
	root    *Elem
	current *Elem
	pos     int
	size    int
}

func (x *xctx) eval(e expr, node *Elem) (any, error) {
	switch e := e.(type) {
	case literal:
		return e.s, nil
	case number:
		return e.f, nil
	case negate:
		v, err := x.eval(e.e, node)
		return -toNumber(v), err
	case filtered:
		v, err := x.eval(e.e, node)
		if err != nil {
			return nil, err
		}
		ns, ok := v.([]*Elem)
		if !ok {
			return nil, errors.New("a predicate on something that is not a node-set")
		}
		for _, pr := range e.preds {
			if ns, err = x.filter(ns, pr); err != nil {
				return nil, err
			}
		}
		return ns, nil
	case *path:
		return x.path(e, node)
	case call:
		return x.call(e, node)
	case binary:
		return x.binary(e, node)
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

func (x *xctx) path(p *path, node *Elem) (any, error) {
	var cur []*Elem
	switch {
	case p.abs:
		cur = []*Elem{x.root}
	case p.filter != nil:
		v, err := x.eval(p.filter, node)
		if err != nil {
			return nil, err
		}
		ns, ok := v.([]*Elem)
		if !ok {
			return nil, errors.New("a path continues something that is not a node-set")
		}
		cur = ns
	default:
		cur = []*Elem{node}
	}
	for _, s := range p.steps {
		var next []*Elem
		seen := map[*Elem]bool{}
		for _, n := range cur {
			for _, c := range x.axis(s, n) {
				if !seen[c] && x.test(s, c) {
					seen[c] = true
					next = append(next, c)
				}
			}
		}
		for _, pr := range s.preds {
			var err error
			if next, err = x.filter(next, pr); err != nil {
				return nil, err
			}
		}
		cur = next
	}
	return cur, nil
}

func (x *xctx) axis(s step, n *Elem) []*Elem {
	switch s.axis {
	case "self":
		return []*Elem{n}
	case "parent":
		if n.Parent != nil {
			return []*Elem{n.Parent}
		}
		return nil
	case "ancestor", "ancestor-or-self":
		var out []*Elem
		if s.axis == "ancestor-or-self" {
			out = append(out, n)
		}
		for p := n.Parent; p != nil; p = p.Parent {
			out = append(out, p)
		}
		return out
	case "descendant", "descendant-or-self":
		var out []*Elem
		if s.axis == "descendant-or-self" {
			out = append(out, n)
		}
		var walk func(*Elem)
		walk = func(e *Elem) {
			for _, c := range e.Children {
				out = append(out, c)
				walk(c)
			}
		}
		walk(n)
		return out
	}
	return n.Children
}

func (x *xctx) test(s step, n *Elem) bool {
	if s.kind == "node" {
		return true
	}
	if s.kind == "text" {
		return false
	}
	if n == x.root {
		return false
	}
	if s.name != "*" && n.Name != s.name {
		return false
	}
	ns := ""
	if s.prefix != "" {
		if m := x.mod.imports[s.prefix]; m != nil {
			ns = m.Namespace
		} else {
			return false
		}
	} else if s.name != "*" {
		// Unprefixed names are in the current node's namespace (RFC 7950
		// §6.4.1).
		ns = x.current.NS
	}
	return ns == "" || n.NS == ns
}

func (x *xctx) filter(ns []*Elem, pr expr) ([]*Elem, error) {
	var out []*Elem
	for i, n := range ns {
		c := *x
		c.pos, c.size = i+1, len(ns)
		v, err := c.eval(pr, n)
		if err != nil {
			return nil, err
		}
		if f, ok := v.(float64); ok {
			if int(f) == i+1 {
				out = append(out, n)
			}
			continue
		}
		if toBool(v) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (x *xctx) call(c call, node *Elem) (any, error) {
	args := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := x.eval(a, node)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	argN := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s() takes %d arguments", c.name, n)
		}
		return nil
	}
	str := func(i int) string {
		if i < len(args) {
			return toString(args[i])
		}
		return stringValue(node)
	}
	switch c.name {
	case "current":
		return []*Elem{x.current}, argN(0)
	case "count":
		ns, ok := firstSet(args)
		if !ok || len(args) != 1 {
			return nil, errors.New("count() takes a node-set")
		}
		return float64(len(ns)), nil
	case "not":
		return !toBool(args[0]), argN(1)
	case "true":
		return true, argN(0)
	case "false":
		return false, argN(0)
	case "boolean":
		return toBool(args[0]), argN(1)
	case "string":
		return str(0), nil
	case "number":
		if len(args) == 0 {
			return toNumber(stringValue(node)), nil
		}
		return toNumber(args[0]), nil
	case "concat":
		var b strings.Builder
		for i := range args {
			b.WriteString(str(i))
		}
		return b.String(), nil
	case "contains":
		return strings.Contains(str(0), str(1)), argN(2)
	case "starts-with":
		return strings.HasPrefix(str(0), str(1)), argN(2)
	case "string-length":
		return float64(len([]rune(str(0)))), nil
	case "normalize-space":
		return strings.Join(strings.Fields(str(0)), " "), nil
	case "local-name", "name":
		ns := []*Elem{node}
		if len(args) == 1 {
			var ok bool
			if ns, ok = args[0].([]*Elem); !ok {
				return nil, errors.New(c.name + "() takes a node-set")
			}
		}
		if len(ns) == 0 {
			return "", nil
		}
		return ns[0].Name, nil
	case "position":
		return float64(x.pos), nil
	case "last":
		return float64(x.size), nil
	case "derived-from", "derived-from-or-self":
		if err := argN(2); err != nil {
			return nil, err
		}
		ns, ok := args[0].([]*Elem)
		if !ok {
			return nil, errors.New(c.name + "() takes a node-set")
		}
		base := x.identity(toString(args[1]))
		if base == nil {
			return false, nil
		}
		for _, n := range ns {
			id := x.set.Identity(n.Value)
			if id != nil && (id.DerivedFrom(base) || c.name == "derived-from-or-self" && id == base) {
				return true, nil
			}
		}
		return false, nil
	}
	return nil, fmt.Errorf("function %s() is not supported", c.name)
}

// identity resolves a "prefix:name" written in the expression's module.
func (x *xctx) identity(s string) *Identity {
	m, name := qname(x.mod, s)
	if m == nil {
		return nil
	}
	return m.identities[name]
}

func firstSet(args []any) ([]*Elem, bool) {
	if len(args) == 0 {
		return nil, false
	}
	ns, ok := args[0].([]*Elem)
	return ns, ok
}

func (x *xctx) binary(b binary, node *Elem) (any, error) {
	l, err := x.eval(b.l, node)
	if err != nil {
		return nil, err
	}
	if b.op == "and" && !toBool(l) {
		return false, nil
	}
	if b.op == "or" && toBool(l) {
		return true, nil
	}
	r, err := x.eval(b.r, node)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "and", "or":
		return toBool(r), nil
	case "|":
		ln, ok1 := l.([]*Elem)
		rn, ok2 := r.([]*Elem)
		if !ok1 || !ok2 {
			return nil, errors.New("| joins node-sets")
		}
		return append(append([]*Elem(nil), ln...), rn...), nil
	case "+":
		return toNumber(l) + toNumber(r), nil
	case "-":
		return toNumber(l) - toNumber(r), nil
	case "*":
		return toNumber(l) * toNumber(r), nil
	case "div":
		return toNumber(l) / toNumber(r), nil
	case "mod":
		return math.Mod(toNumber(l), toNumber(r)), nil
	}
	return x.compare(b.op, l, r), nil
}

// compare implements XPath 1.0 §3.4 comparisons; identityref values
// compare as identities, whatever prefixes name them.
func (x *xctx) compare(op string, l, r any) bool {
	ln, lset := l.([]*Elem)
	rn, rset := r.([]*Elem)
	switch {
	case lset && rset:
		for _, a := range ln {
			for _, b := range rn {
				if x.cmpValues(op, a, stringValue(a), stringValue(b)) {
					return true
				}
			}
		}
		return false
	case lset || rset:
		set, other, flip := ln, r, false
		if rset {
			set, other, flip = rn, l, true
		}
		for _, n := range set {
			var ok bool
			switch o := other.(type) {
			case float64:
				a, b := toNumber(stringValue(n)), o
				if flip {
					a, b = b, a
				}
				ok = cmpNum(op, a, b)
			case bool:
				a, b := len(set) > 0, o
				ok = (op == "=") == (a == b)
				if op != "=" && op != "!=" {
					ok = cmpNum(op, toNumber(a), toNumber(b))
				}
			default:
				s := x.normalizeIdentity(n, toString(o))
				a, b := stringValue(n), s
				if flip {
					a, b = b, a
				}
				ok = x.cmpValues(op, n, a, b)
			}
			if ok {
				return true
			}
		}
		return false
	}
	switch {
	case op != "=" && op != "!=":
		return cmpNum(op, toNumber(l), toNumber(r))
	case isBool(l) || isBool(r):
		return (toBool(l) == toBool(r)) == (op == "=")
	case isNum(l) || isNum(r):
		return (toNumber(l) == toNumber(r)) == (op == "=")
	}
	return (toString(l) == toString(r)) == (op == "=")
}

// normalizeIdentity turns a literal compared with an identityref node
// into the node's "module:name" form.
func (x *xctx) normalizeIdentity(n *Elem, s string) string {
	if n.Schema != nil && n.Schema.Type != nil && n.Schema.Type.Kind == "identityref" {
		if id := x.identity(s); id != nil {
			return id.String()
		}
	}
	return s
}

func (x *xctx) cmpValues(op string, _ *Elem, a, b string) bool {
	switch op {
	case "=":
		return a == b
	case "!=":
		return a != b
	}
	return cmpNum(op, toNumber(a), toNumber(b))
}

func cmpNum(op string, a, b float64) bool {
	switch op {
	case "=":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case ">":
		return a > b
	case "<=":
		return a <= b
	case ">=":
		return a >= b
	}
	return false
}

func isBool(v any) bool { _, ok := v.(bool); return ok }
func isNum(v any) bool  { _, ok := v.(float64); return ok }

func toBool(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case float64:
		return v != 0 && !math.IsNaN(v)
	case string:
		return v != ""
	case []*Elem:
		return len(v) > 0
	}
	return false
}

func toNumber(v any) float64 {
	switch v := v.(type) {
	case bool:
		if v {
			return 1
		}
		return 0
	case float64:
		return v
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return math.NaN()
		}
		return f
	case []*Elem:
		if len(v) == 0 {
			return math.NaN()
		}
		return toNumber(stringValue(v[0]))
	}
	return math.NaN()
}

func toString(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case float64:
		if v == math.Trunc(v) && !math.IsInf(v, 0) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		return v
	case []*Elem:
		if len(v) == 0 {
			return ""
		}
		return stringValue(v[0])
	}
	return ""
}

// stringValue is the XPath string-value of an element: a leaf's value,
// or its descendants' values concatenated.
func stringValue(e *Elem) string {
	if len(e.Children) == 0 {
		return e.Value
	}
	var b strings.Builder
	for _, c := range e.Children {
		b.WriteString(stringValue(c))
	}
	return b.String()
}

// Eval evaluates cond with node as the context and current node, in the
// tree under root, as a boolean.
func (s *Set) Eval(cond *Cond, root, node *Elem) (bool, error) {
	if cond.x == nil {
		return false, fmt.Errorf("expression %q did not compile", cond.Expr)
	}
	x := &xctx{set: s, mod: cond.mod, root: root, current: node, pos: 1, size: 1}
	v, err := x.eval(cond.x, node)
	if err != nil {
		return false, err
	}
	return toBool(v), nil
}
