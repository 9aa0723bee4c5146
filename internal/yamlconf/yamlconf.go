// Package yamlconf decodes the configuration files of RIV's services
// strictly: an unknown key, a value of the wrong type or a bad value is
// an Error naming the file, the line and the key's dotted path, so that
// `config check` tells an operator exactly what to fix. The files'
// schemas and their validation stay with each service (agent/config,
// collector/config).
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Error is a problem with one key of a file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path, e.g. logs.bios or devices[2].address
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Msg
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// KeyErr builds an error about key's value, for Validate methods; Locate
// adds the file and line.
func KeyErr(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// MaxFile bounds a configuration file: a collector's inventory of
// 250,000 devices, one line each, is about 50 MB.
const MaxFile = 64 << 20

// Read reads file, refusing one larger than MaxFile.
func Read(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(b) > MaxFile {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", MaxFile)}
	}
	return b, nil
}

// Lines finds the line of each key set in a file (dotted paths, list
// items as key[i]). It parses the file again when asked, which only an
// error does: a configuration of 100,000 devices took a second more to
// load when every key's line was collected up front.
type Lines struct{ b []byte }

// lineMap maps each key to its line.
type lineMap map[string]int

func (l Lines) lines() lineMap {
	var root yaml.Node
	out := lineMap{}
	if yaml.Unmarshal(l.b, &root) == nil {
		collectLines(&root, "", out)
	}
	return out
}

// All maps every key set in the file to its line.
func (l Lines) All() map[string]int { return l.lines() }

// Locate gives an *Error from Validate its file and, when it has none,
// the line of its key; other errors are returned as they are.
func (l Lines) Locate(file string, err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = file
		if ce.Line == 0 {
			ce.Line = l.lines()[ce.Key]
		}
	}
	return err
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// Decode decodes b strictly into v (which holds the defaults: keys in the
// file replace them) and returns the line of every key.
func Decode(file string, b []byte, v any) (Lines, error) {
	lines := Lines{b}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg := te.Errors[0]
			if m := unknownField.FindStringSubmatch(msg); m != nil {
				var line int
				fmt.Sscan(m[1], &line)
				return Lines{}, &Error{File: file, Line: line, Key: lines.lines().keyAt(line, m[2]), Msg: "unknown key"}
			}
			var line int
			if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
				msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
				return Lines{}, &Error{File: file, Line: line, Key: lines.lines().keyAt(line, ""), Msg: msg}
			}
			return Lines{}, &Error{File: file, Msg: msg}
		}
		var ce *Error
		if errors.As(err, &ce) {
			// From a field's UnmarshalYAML: it knows its line, not its key.
			ce.File = file
			if ce.Key == "" {
				ce.Key = lines.lines().keyAt(ce.Line, "")
			}
			return Lines{}, ce
		}
		return Lines{}, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	return lines, nil
}

// collectLines records the line of every mapping key under its dotted
// path (list items as key[i]).
func collectLines(n *yaml.Node, path string, out lineMap) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectLines(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			collectLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			collectLines(c, p, out)
		}
	}
}

// keyAt names the key on line: the dotted path of the key name there, or
// with no name the outermost key on the line.
func (l lineMap) keyAt(line int, name string) string {
	best := ""
	for k, at := range l {
		if at != line {
			continue
		}
		switch {
		case name != "" && (k == name || strings.HasSuffix(k, "."+name)):
			return k
		case name == "" && (best == "" || len(k) < len(best)):
			best = k
		}
	}
	if best == "" {
		return name
	}
	return best
}

// Readable checks that path is set and can be opened, as key's value.
func Readable(key, path string) error {
	if path == "" {
		return KeyErr(key, "required")
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", path, pe.Err)
		}
		return KeyErr(key, "%v", err)
	}
	f.Close()
	return nil
}

// ReadSecret reads a secret file: its first line, without the line end.
func ReadSecret(path string) (string, error) {
	if path == "" {
		return "", errors.New("required")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
