package cli

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testApp(got *Strings, gotErr *error) *App {
	run := func(env *Env, args []string) error {
		fs := env.Flags()
		fs.Var(got, "t", "a `TARGET` (repeatable)")
		fs.Bool("json", false, "print JSON")
		if err := env.ParseInOrder(fs, args, got); err != nil {
			return err
		}
		return *gotErr
	}
	return &App{Name: "tool", Summary: "a tool", Commands: []*Command{
		{Name: "do", Args: "[-t T] T...", Summary: "does", Run: run},
		{Name: "grp sub", Args: "", Summary: "sub", Run: run},
	}}
}

// TestRun: the conventions every binary shares.
func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		err     error
		code    int
		stdout  string // substring
		stderr  string // substring
		targets []string
	}{
		{"ok, order kept", []string{"do", "a", "-t", "b", "--json", "c"}, nil, 0, "", "", []string{"a", "b", "c"}},
		{"after --", []string{"do", "--", "-t", "x"}, nil, 0, "", "", []string{"-t", "x"}},
		{"failed", []string{"do"}, Failed("bad\nsecond line"), 1, "", "tool: bad\n", nil},
		{"unreachable", []string{"do"}, Unreachable("gone"), 3, "", "tool: gone", nil},
		{"plain error", []string{"do"}, errors.New("x"), 1, "", "tool: x", nil},
		{"help", []string{"do", "--help"}, nil, 0, "Usage: tool do [-t T] T...", "", nil},
		{"help flags", []string{"do", "-h"}, nil, 0, "--t TARGET", "", nil},
		{"help command", []string{"help", "grp", "sub"}, nil, 0, "Usage: tool grp sub", "", nil},
		{"program help", []string{"--help"}, nil, 0, "Exit status:", "", nil},
		{"group help", []string{"grp", "--help"}, nil, 0, "tool grp sub", "", nil},
		{"no command", nil, nil, 2, "", "Usage:", nil},
		{"unknown", []string{"nope"}, nil, 2, "", `unknown command "nope"`, nil},
		{"unknown sub", []string{"grp", "nope"}, nil, 2, "", `unknown subcommand "nope"`, nil},
		{"bad flag", []string{"do", "--frob"}, nil, 2, "", "tool: do: flag provided but not defined: -frob (see --help)", nil},
		{"version", []string{"version"}, nil, 0, "tool dev (", "", nil},
		{"version extra", []string{"version", "x"}, nil, 2, "", "unexpected argument", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got Strings
			err := tc.err
			var out, errb strings.Builder
			code := testApp(&got, &err).Run(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("Run(%q) = %d\nstdout: %s\nstderr: %s", tc.args, code, out.String(), errb.String())
			}
			if tc.code != 0 && tc.name != "no command" && strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("stderr is not one line: %q", errb.String())
			}
			if tc.targets != nil {
				if d := cmp.Diff(tc.targets, []string(got)); d != "" {
					t.Errorf("targets (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestCode(t *testing.T) {
	for err, want := range map[error]int{nil: 0, flag.ErrHelp: 0, Usage("u"): 2, Failed("f"): 1, Unreachable("x"): 3, errors.New("e"): 1} {
		if got := Code(err); got != want {
			t.Errorf("Code(%v) = %d, want %d", err, got, want)
		}
	}
}

// TestIsTerminal: /dev/null is a character device but not a terminal,
// and a pipe is neither; progress goes to neither.
func TestIsTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{null, w} {
		if IsTerminal(f) {
			t.Errorf("%s is taken for a terminal", f.Name())
		}
	}
	var b strings.Builder
	(&Env{Stderr: &b}).Progress("x")
	if b.Len() != 0 {
		t.Error("progress written to a non-terminal")
	}
}
