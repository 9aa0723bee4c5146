package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/openriv/riv/agent/provision"
)

// The example configuration and the operator's guide are held to the code
// here: the example loads once the files it names exist, every key of
// Config is in both, and every default either states is Default()'s. A
// key added to Config without its line in both fails these tests.
const (
	exampleFile = "../../deploy/riv-agent.yaml"
	guideFile   = "../../docs/agent.md"
	// guideKeys is the heading of the guide's table of keys.
	guideKeys = "## Configuration keys"
)

// notInExample are keys the example can only mention in a comment:
// serve refuses line_cards for now, so a config check would too.
var notInExample = []string{"line_cards"}

var (
	// absPath finds absolute paths in YAML text: after the start of a
	// line, a space, a quote or a flow-collection delimiter.
	absPath = regexp.MustCompile(`(?m)(^|[\s"'\[{,:])(/[A-Za-z0-9._-][^\s"',\]}#]*)`)
	// optional finds the example's optional settings: "#key: value", with
	// no space after the # (prose comments have one).
	optional = regexp.MustCompile(`(?m)^(\s*)#([a-z_]+:.*)$`)
)

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// underDir rewrites every absolute path /x/y of text to DIR/x/y.
func underDir(text, dir string) string {
	return absPath.ReplaceAllString(text, "${1}"+dir+"${2}")
}

// materialize creates what Validate looks for at each path c names, all
// of which must be under dir: a directory for inventory, the parent
// directory of the file the agent writes (boots_file), a password for the
// SNMP key files and a placeholder for the others (Validate opens files
// but parses no certificate). A regular file stands in for the TPM
// device: validTPM only stats it.
func materialize(t *testing.T, dir string, c *Config) {
	t.Helper()
	leaves(reflect.ValueOf(c).Elem(), "", func(key string, v reflect.Value) {
		if v.Kind() != reflect.String || !strings.HasPrefix(v.String(), "/") {
			return
		}
		p := v.String()
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Errorf("%s: %s is not under the test directory: the example leaves a path to its default; write it out", key, p)
			return
		}
		var err error
		switch {
		case key == "inventory":
			err = os.MkdirAll(p, 0o755)
		case strings.HasSuffix(key, "boots_file"), strings.HasSuffix(key, "state_file"):
			err = os.MkdirAll(filepath.Dir(p), 0o755)
		default:
			content := "placeholder\n"
			if strings.HasSuffix(key, "_key_file") {
				content = "example-password-for-" + filepath.Base(p) + "\n"
			}
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte(content), 0o600)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	})
}

// loadExample rewrites text's paths under a new directory, creates the
// files, and loads it as serve and config check do.
func loadExample(t *testing.T, text string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	text = underDir(text, dir)
	// A text that does not parse has no files to create: Load reports
	// why, as it would to serve.
	if c, _, err := Parse(exampleFile, []byte(text)); err == nil {
		materialize(t, dir, c)
	}
	f := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(f)
}

func TestExampleLoads(t *testing.T) {
	text := readExample(t)
	t.Run("as shipped", func(t *testing.T) {
		c, err := loadExample(t, text)
		if err != nil {
			t.Fatalf("Load(%s) = %v", exampleFile, err)
		}
		if c.Identity.LDevID != nil || c.Identity.LAK != nil {
			t.Errorf("the shipped example sets the owner's keys; they are meant as optional lines")
		}
	})
	t.Run("optional settings enabled", func(t *testing.T) {
		n := len(optional.FindAllString(text, -1))
		c, err := loadExample(t, optional.ReplaceAllString(text, "${1}${2}"))
		if err != nil {
			t.Fatalf("Load(%s with its %d optional lines) = %v", exampleFile, n, err)
		}
		if c.Identity.LDevID == nil || c.Identity.LAK == nil {
			t.Errorf("the example has no optional identity.ldevid and identity.lak lines")
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, err := loadExample(t, strings.Replace(text, "\nlogs:\n", "\nlogs:\n  colour: blue\n", 1))
		if err == nil || !strings.HasSuffix(err.Error(), "logs.colour: unknown key") {
			t.Errorf("Load(example with logs.colour) = %v, want the unknown key named", err)
		}
	})
}

// TestExampleEveryKey: the example, its optional lines enabled, sets every
// key of Config.
func TestExampleEveryKey(t *testing.T) {
	_, lines, err := Parse(exampleFile, []byte(optional.ReplaceAllString(readExample(t), "${1}${2}")))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	index := regexp.MustCompile(`\[\d+\]`)
	for k := range lines.All() {
		set[index.ReplaceAllString(k, "[]")] = true
	}
	for k := range keyTypes() {
		if !set[k] && !coveredBy(k, notInExample) {
			t.Errorf("%s: %s is not in the example", exampleFile, k)
		}
	}
}

// TestExampleDefaults: a value the example marks "(default)" — on its
// line, or in the comment just above it — is Default()'s.
func TestExampleDefaults(t *testing.T) {
	text := readExample(t)
	c, lines, err := Parse(exampleFile, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	types := keyTypes()
	atLine := map[int][]string{}
	for k, l := range lines.All() {
		if _, leaf := types[k]; leaf {
			atLine[l] = append(atLine[l], k)
		}
	}
	checked := 0
	pending := false
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		s := strings.TrimSpace(line)
		marked := strings.Contains(s, "(default)") || strings.Contains(s, "(default:")
		switch {
		case s == "":
			pending = false
		case strings.HasPrefix(s, "#"):
			pending = pending || marked
		default:
			if pending || marked {
				if len(atLine[n]) == 0 {
					t.Errorf("%s:%d: marked (default) but sets no key", exampleFile, n)
				}
				for _, k := range atLine[n] {
					got, _ := valueAt(reflect.ValueOf(c).Elem(), k)
					want, ok := valueAt(reflect.ValueOf(Default()).Elem(), k)
					if !ok || !reflect.DeepEqual(got.Interface(), want.Interface()) {
						t.Errorf("%s:%d: %s = %v is marked (default); Default() has %v", exampleFile, n, k, got, want)
					}
					checked++
				}
			}
			pending = false
		}
	}
	if checked == 0 {
		t.Errorf("%s marks no value (default)", exampleFile)
	}
}

// guideRow is a row of the guide's table of keys.
type guideRow struct {
	line       int
	key, deflt string
}

var tableRow = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\|")

func readGuide(t *testing.T) []guideRow {
	t.Helper()
	b, err := os.ReadFile(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	var rows []guideRow
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			in = strings.TrimSpace(line) == guideKeys
			continue
		}
		if m := tableRow.FindStringSubmatch(line); in && m != nil {
			rows = append(rows, guideRow{i + 1, m[1], strings.TrimSpace(m[2])})
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no table of keys under %q", guideFile, guideKeys)
	}
	return rows
}

// TestGuideKeys: the guide's table names every key (a row may stand for
// a group, identity.ldevid for its cert and handle), only keys, and its
// defaults — a value in backquotes in the second column — are Default()'s;
// every key with a default other than the zero value has its own row
// that states it.
func TestGuideKeys(t *testing.T) {
	rows := readGuide(t)
	types := keyTypes()
	d := reflect.ValueOf(Default()).Elem()
	var names []string
	exact := map[string]guideRow{}
	for _, r := range rows {
		names = append(names, r.key)
		exact[r.key] = r
		if !isKeyOrGroup(r.key, types) {
			t.Errorf("%s:%d: %s is not a key of Config", guideFile, r.line, r.key)
			continue
		}
		v, ok := valueAt(d, r.key)
		isLit := len(r.deflt) >= 2 && strings.HasPrefix(r.deflt, "`") && strings.HasSuffix(r.deflt, "`") && strings.Count(r.deflt, "`") == 2
		lit := strings.Trim(r.deflt, "`")
		switch {
		case !isLit:
		case !ok:
			t.Errorf("%s:%d: %s: default %s, but the key has none of its own", guideFile, r.line, r.key, r.deflt)
		default:
			same, err := sameValue(lit, v)
			if err != nil || !same {
				t.Errorf("%s:%d: %s: default %s, Default() has %v (%v)", guideFile, r.line, r.key, r.deflt, v, err)
			}
		}
	}
	for k := range types {
		if !coveredBy(k, names) {
			t.Errorf("%s: %s has no row in the table of keys", guideFile, k)
			continue
		}
		v, ok := valueAt(d, k)
		if !ok || v.IsZero() {
			continue
		}
		if r, has := exact[k]; !has || !strings.HasPrefix(r.deflt, "`") || strings.Count(r.deflt, "`") != 2 {
			t.Errorf("%s: %s defaults to %v: give it a row with the default in backquotes", guideFile, k, v)
		}
	}
}

// TestDefaultContract pins the defaults to what they come from: the
// RFCs' ports, the kernel's device and files, and the handles and files
// `riv-agent provision` leaves.
func TestDefaultContract(t *testing.T) {
	d := Default()
	for _, tc := range []struct{ name, got, want string }{
		{"listen.netconf_ssh (RFC 6242)", d.Listen.NetconfSSH, "[::]:830"},
		{"listen.netconf_tls (RFC 7589)", d.Listen.NetconfTLS, "[::]:6513"},
		{"listen.restconf (RFC 8040, HTTPS)", d.Listen.RESTCONF, "[::]:443"},
		{"listen.snmp (RFC 3417)", d.Listen.SNMP, "[::]:161"},
		{"tpm (the kernel's resource manager)", d.TPM, "/dev/tpmrm0"},
		{"logs.bios", d.Logs.BIOS, "/sys/kernel/security/tpm0/binary_bios_measurements"},
		{"logs.ima", d.Logs.IMA, "/sys/kernel/security/ima/binary_runtime_measurements"},
		{"identity.idevid.handle", handleHex(d.Identity.IDevID.Handle), handleHex(provision.IDevIDHandle)},
		{"identity.iak.handle", handleHex(d.Identity.IAK.Handle), handleHex(provision.IAKHandle)},
		{"identity.idevid.cert (provision --dir /etc/riv)", d.Identity.IDevID.Cert, "/etc/riv/idevid.pem"},
		{"identity.iak.cert (provision --dir /etc/riv)", d.Identity.IAK.Cert, "/etc/riv/iak.pem"},
		{"identity.use", d.Identity.Use, "idevid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("Default() = %s, want %s", tc.got, tc.want)
			}
		})
	}
	// The owner's keys have no default, but the example's optional lines
	// name provision --local's handles.
	c, _, err := Parse(exampleFile, []byte(optional.ReplaceAllString(readExample(t), "${1}${2}")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.LDevID == nil || c.Identity.LAK == nil {
		t.Fatal("the example has no optional identity.ldevid and identity.lak lines")
	}
	if c.Identity.LDevID.Handle != provision.LDevIDHandle || c.Identity.LAK.Handle != provision.LAKHandle {
		t.Errorf("example ldevid/lak handles = %s/%s, want provision's %s/%s", handleHex(c.Identity.LDevID.Handle), handleHex(c.Identity.LAK.Handle),
			handleHex(provision.LDevIDHandle), handleHex(provision.LAKHandle))
	}
}

func handleHex(h uint32) string { return fmt.Sprintf("0x%08x", h) }

// keyTypes returns the type of every leaf key of Config by its dotted
// path: struct fields by their yaml names, a list of structs as key[]
// before its items' keys; maps, scalars and lists of scalars are leaves.
func keyTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(t reflect.Type, key string)
	walk = func(t reflect.Type, key string) {
		switch {
		case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
			walk(t.Elem(), key)
		case t.Kind() == reflect.Struct:
			for i := range t.NumField() {
				walk(t.Field(i).Type, join(key, yamlName(t.Field(i))))
			}
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			walk(t.Elem(), key+"[]")
		default:
			out[key] = t
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}

// leaves calls fn with every leaf value under v and its key (list items
// as key[]; a nil pointer to a struct has none).
func leaves(v reflect.Value, key string, fn func(key string, v reflect.Value)) {
	switch {
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		if !v.IsNil() {
			leaves(v.Elem(), key, fn)
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			leaves(v.Field(i), join(key, yamlName(v.Type().Field(i))), fn)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		for i := range v.Len() {
			leaves(v.Index(i), key+"[]", fn)
		}
	default:
		fn(key, v)
	}
}

// valueAt returns the value of key in v, false when the key is inside a
// list or a nil pointer (it has no single value).
func valueAt(v reflect.Value, key string) (reflect.Value, bool) {
	for _, name := range strings.Split(key, ".") {
		if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || strings.HasSuffix(name, "[]") {
			return reflect.Value{}, false
		}
		found := false
		for i := range v.NumField() {
			if yamlName(v.Type().Field(i)) == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// sameValue reports whether the guide's text for a default is v: strings
// compared as they are, other types decoded as the config file would.
func sameValue(text string, v reflect.Value) (bool, error) {
	if v.Kind() == reflect.String {
		return text == v.String(), nil
	}
	p := reflect.New(v.Type())
	if err := yaml.Unmarshal([]byte(text), p.Interface()); err != nil {
		return false, err
	}
	return reflect.DeepEqual(p.Elem().Interface(), v.Interface()), nil
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// coveredBy reports whether key is one of names or inside one of them.
func coveredBy(key string, names []string) bool {
	for _, n := range names {
		if key == n || strings.HasPrefix(key, n+".") || strings.HasPrefix(key, n+"[].") {
			return true
		}
	}
	return false
}

// isKeyOrGroup reports whether name is a leaf key or holds some.
func isKeyOrGroup(name string, types map[string]reflect.Type) bool {
	for k := range types {
		if coveredBy(k, []string{name}) {
			return true
		}
	}
	return false
}
