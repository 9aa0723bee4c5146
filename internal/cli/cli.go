// Package cli holds the conventions every RIV binary follows: named
// subcommands, each with --help that prints its usage to stdout and exits
// 0; a version command; the exit codes below; a one-line reason on
// stderr; progress on stderr only when it is a terminal.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
)

// Exit codes of every RIV binary.
const (
	ExitOK          = 0 // verified, affirming, done
	ExitFailed      = 1 // the evidence failed: warning or contraindicated
	ExitUsage       = 2 // bad usage or unreadable input
	ExitUnreachable = 3 // the device could not be reached or spoke no protocol we know
)

// ExitCodes is the exit-status paragraph every usage text ends with.
const ExitCodes = `Exit status:
  0  verified, affirming, done
  1  the evidence failed (a warning or contraindicated verdict)
  2  usage error or unreadable input
  3  the device could not be reached or spoke no protocol RIV knows
`

// Error is an error with the exit code it stands for.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func coded(code int, format string, a []any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, a...)}
}

// Usage is bad usage or unreadable input (exit 2).
func Usage(format string, a ...any) error { return coded(ExitUsage, format, a) }

// Failed is evidence that did not verify (exit 1).
func Failed(format string, a ...any) error { return coded(ExitFailed, format, a) }

// Unreachable is a device that could not be reached or spoke no protocol
// we know (exit 3).
func Unreachable(format string, a ...any) error { return coded(ExitUnreachable, format, a) }

// Code is the exit code for err: 0 for nil, the Error's code, and
// ExitFailed for any other error.
func Code(err error) int {
	var e *Error
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return ExitOK
	case errors.As(err, &e):
		return e.Code
	}
	return ExitFailed
}

// ErrHelp is returned by Parse when --help was asked for and printed.
var ErrHelp = flag.ErrHelp

// Version is the release, set at link time by the Makefile
// (-X github.com/openriv/riv/internal/cli.Version=...).
var Version = "dev"

// VersionLine is "NAME VERSION (commit C[, modified], GOVERSION)".
func VersionLine(name string) string {
	var extra []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(12, len(s.Value))]
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			c := "commit " + rev
			if dirty {
				c += ", modified"
			}
			extra = append(extra, c)
		}
		extra = append(extra, bi.GoVersion)
	}
	return fmt.Sprintf("%s %s (%s)", name, Version, strings.Join(extra, ", "))
}

// Command is one subcommand.
type Command struct {
	Name    string // words after the program name: "attest", "eventlog replay"
	Args    string // the synopsis after the name: "[--json] FILE"
	Summary string // one line
	Help    string // more text for its --help (optional)
	Run     func(env *Env, args []string) error
}

// App is a program made of subcommands.
type App struct {
	Name     string
	Summary  string
	Commands []*Command
	// Main, when set, is the program itself: its flags follow the
	// program name. Commands may then name subcommands beside it.
	Main *Command
}

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	app            *App
	cmd            *Command
}

// Run runs the program on args (without the program name) and returns the
// exit code.
func (a *App) Run(args []string, stdout, stderr io.Writer) (code int) {
	env := &Env{Stdout: stdout, Stderr: stderr, app: a}
	defer func() {
		// A panic is a bug, but the contract is a one-line reason and a
		// usage exit, never a stack trace for an operator.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "%s: internal error: %v\n", a.Name, r)
			code = ExitUsage
		}
	}()
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		if len(args) > 1 && !isHelp(args[1]) {
			fmt.Fprintf(stderr, "%s version: unexpected argument %q\n", a.Name, args[1])
			return ExitUsage
		}
		fmt.Fprintln(stdout, VersionLine(a.Name))
		return ExitOK
	}
	if a.Main != nil {
		// A program that is a command itself may have subcommands too
		// (riv-router --dir D; riv-router measure ...).
		if cmd, rest := a.find(args); cmd != nil {
			env.cmd = cmd
			return env.finish(cmd.Run(env, rest))
		}
		env.cmd = a.Main
		return env.finish(a.Main.Run(env, args))
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, a.usage())
		return ExitUsage
	}
	if isHelp(args[0]) || args[0] == "help" {
		if len(args) > 1 {
			// "help eventlog replay" is "eventlog replay --help".
			return a.Run(append(slices.Clone(args[1:]), "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, a.usage())
		return ExitOK
	}
	cmd, rest := a.find(args)
	if cmd == nil {
		group := a.group(args[0])
		if group == "" {
			fmt.Fprintf(stderr, "%s: unknown command %q (see %s --help)\n", a.Name, args[0], a.Name)
			return ExitUsage
		}
		if len(args) > 1 && isHelp(args[1]) {
			fmt.Fprint(stdout, a.groupUsage(group))
			return ExitOK
		}
		if len(args) == 1 {
			fmt.Fprintf(stderr, "%s %s: a subcommand is required\n%s", a.Name, group, a.groupUsage(group))
		} else {
			fmt.Fprintf(stderr, "%s %s: unknown subcommand %q (see %s %s --help)\n", a.Name, group, args[1], a.Name, group)
		}
		return ExitUsage
	}
	env.cmd = cmd
	return env.finish(cmd.Run(env, rest))
}

// Exec runs the command args name with the rest of args and returns its
// error as it is, for tests that want more than the exit code.
func (a *App) Exec(args []string, stdout, stderr io.Writer) error {
	cmd, rest := a.find(args)
	if cmd == nil {
		return Usage("%s: no command %q", a.Name, args)
	}
	return cmd.Run(&Env{Stdout: stdout, Stderr: stderr, app: a, cmd: cmd}, rest)
}

func (e *Env) finish(err error) int {
	if err == nil || errors.Is(err, ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(e.Stderr, "%s: %s\n", e.app.Name, oneLine(err.Error()))
	return Code(err)
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// find matches the longest command name at the start of args.
func (a *App) find(args []string) (*Command, []string) {
	var best *Command
	for _, c := range a.Commands {
		w := strings.Fields(c.Name)
		if len(w) <= len(args) && slices.Equal(w, args[:len(w)]) && (best == nil || len(w) > len(strings.Fields(best.Name))) {
			best = c
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[len(strings.Fields(best.Name)):]
}

// group returns word when it is the first word of multi-word commands.
func (a *App) group(word string) string {
	for _, c := range a.Commands {
		if w := strings.Fields(c.Name); len(w) > 1 && w[0] == word {
			return word
		}
	}
	return ""
}

func (a *App) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s — %s\n\nUsage:\n", a.Name, a.Summary)
	for _, c := range a.Commands {
		fmt.Fprintf(&b, "  %s %s %s\n", a.Name, c.Name, c.Args)
	}
	fmt.Fprintf(&b, "  %s version\n\n", a.Name)
	for _, c := range a.Commands {
		fmt.Fprintf(&b, "  %-18s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(&b, "\nEvery command takes --help.\n")
	return b.String() + "\n" + ExitCodes
}

func (a *App) groupUsage(group string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n")
	for _, c := range a.Commands {
		if strings.HasPrefix(c.Name, group+" ") {
			fmt.Fprintf(&b, "  %s %s %s\n      %s\n", a.Name, c.Name, c.Args, c.Summary)
		}
	}
	return b.String()
}

// commandName is the program and command as typed: "rivctl ear verify".
func (e *Env) commandName() string {
	if e.cmd.Name == "" {
		return e.app.Name
	}
	return e.app.Name + " " + e.cmd.Name
}

// Strings is a repeatable flag (--tpm-ca A --tpm-ca B), kept in order.
type Strings []string

func (l *Strings) String() string     { return strings.Join(*l, ",") }
func (l *Strings) Set(v string) error { *l = append(*l, v); return nil }

// Flags returns the command's flag set; Parse it with Env.Parse.
func (e *Env) Flags() *flag.FlagSet {
	fs := flag.NewFlagSet(e.commandName(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// Parse parses args, taking flags after positional arguments too
// (rivctl eventlog replay FILE --json). --help prints the command's usage
// to stdout and returns ErrHelp; any other error is a Usage error.
func (e *Env) Parse(fs *flag.FlagSet, args []string) error { return e.ParseInOrder(fs, args, nil) }

// ParseInOrder is Parse that also hands each positional argument to
// positional (when not nil) as it is met, so a flag.Value shared with a
// repeatable flag keeps the command line's order.
func (e *Env) ParseInOrder(fs *flag.FlagSet, args []string, positional flag.Value) error {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(e.Stdout, e.CommandUsage(fs))
				return ErrHelp
			}
			if e.cmd.Name == "" {
				return Usage("%v (see --help)", err)
			}
			return Usage("%s: %v (see --help)", e.cmd.Name, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		take := rest[:1]
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			take = rest // after "--" everything is positional
		}
		for _, p := range take {
			if positional != nil {
				if err := positional.Set(p); err != nil {
					return Usage("%s: %v", e.cmd.Name, err)
				}
			}
			pos = append(pos, p)
		}
		args = rest[len(take):]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// CommandUsage is the command's --help text.
func (e *Env) CommandUsage(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s %s\n\n%s\n", e.commandName(), e.cmd.Args, e.cmd.Summary)
	if e.cmd.Help != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(e.cmd.Help, "\n"))
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(&b, "\nFlags:\n")
			fs.VisitAll(func(f *flag.Flag) {
				arg, usage := flag.UnquoteUsage(f)
				line := "  --" + f.Name
				if arg != "" {
					line += " " + strings.ToUpper(arg)
				}
				fmt.Fprintf(&b, "%-28s %s", line, usage)
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" {
					fmt.Fprintf(&b, " (default %s)", f.DefValue)
				}
				b.WriteString("\n")
			})
		}
	}
	return b.String() + "\n" + ExitCodes
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Progress writes a progress line to stderr when stderr is a terminal
// (scripts and logs never see it); each line replaces the last.
func (e *Env) Progress(format string, a ...any) {
	if !IsTerminal(e.Stderr) {
		return
	}
	fmt.Fprintf(e.Stderr, "\r\x1b[K"+format, a...)
}

// EndProgress clears the progress line, if any.
func (e *Env) EndProgress() {
	if IsTerminal(e.Stderr) {
		fmt.Fprint(e.Stderr, "\r\x1b[K")
	}
}

// IsTerminal says whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f.Fd())
}
