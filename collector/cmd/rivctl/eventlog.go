package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

type bankList []alg.ID

func (b *bankList) String() string { return fmt.Sprint(*b) }
func (b *bankList) Set(s string) error {
	a, err := alg.ParseHash(s)
	if err != nil {
		return err
	}
	*b = append(*b, a)
	return nil
}

func loadLog(path, format string) (*eventlog.Log, error) {
	f, err := eventlog.ParseFormat(format)
	if err != nil {
		return nil, badInput("%v", err)
	}
	raw, err := readInput(path)
	if err != nil {
		return nil, err
	}
	l, err := eventlog.Parse(raw, f)
	if err != nil {
		return nil, badInput("%s: %v", path, err)
	}
	return l, nil
}

func cmdReplay(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	format := fs.String("format", "auto", "log format")
	var banks bankList
	fs.Var(&banks, "bank", "PCR bank (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	expect := fs.String("expect", "", "PCR values (replay JSON) the log must reproduce")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("eventlog replay: want exactly one FILE")
	}
	l, err := loadLog(fs.Arg(0), *format)
	if err != nil {
		return err
	}
	vals, err := l.Replay(eventlog.ReplayOptions{Banks: banks})
	if err != nil {
		return badInput("%s: %v", fs.Arg(0), err)
	}
	if *asJSON {
		b, _ := json.Marshal(vals)
		fmt.Fprintf(out, "%s\n", b)
	} else {
		printValues(out, vals)
	}
	if *expect != "" {
		raw, err := readInput(*expect)
		if err != nil {
			return err
		}
		var want pcr.Values
		if err := json.Unmarshal(raw, &want); err != nil {
			return badInput("%s: %v", *expect, err)
		}
		// An expectation that names no PCR would pass having checked
		// nothing.
		n := 0
		for _, b := range want.Banks() {
			n += len(want.Indexes(b))
		}
		if n == 0 {
			return badInput("--expect %s: no PCR values to check (want {\"sha256\": {\"0\": \"HEX\", ...}})", *expect)
		}
		res, err := l.Verify(want)
		if err != nil {
			return badInput("%s: %v", fs.Arg(0), err)
		}
		if !res.OK() {
			return cli.Failed("log does not replay to %s: %s", *expect, strings.Join(res.Mismatches, "; "))
		}
	}
	return nil
}

func printValues(out io.Writer, v pcr.Values) {
	for _, b := range v.Banks() {
		fmt.Fprintf(out, "%s:\n", b)
		for _, i := range v.Indexes(b) {
			fmt.Fprintf(out, "  %2d: %x\n", i, v.Get(b, i))
		}
	}
}

type eventJSON struct {
	Seq      int               `json:"seq"`
	PCR      int               `json:"pcr"`
	NVIndex  *uint32           `json:"nv_index,omitempty"`
	Type     string            `json:"type,omitempty"`
	Template string            `json:"template,omitempty"`
	File     string            `json:"file,omitempty"`
	FileHash string            `json:"file_hash,omitempty"`
	Digests  map[string]string `json:"digests"`
	Data     string            `json:"data,omitempty"`
	DataHex  string            `json:"data_hex,omitempty"`
	Anomaly  string            `json:"anomaly,omitempty"`
}

func cmdShow(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	format := fs.String("format", "auto", "log format")
	asJSON := fs.Bool("json", false, "print one JSON object per event")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("eventlog show: want exactly one FILE")
	}
	l, err := loadLog(fs.Arg(0), *format)
	if err != nil {
		return err
	}
	l.CheckDigests()
	enc := json.NewEncoder(out)
	for i := range l.Events {
		e := &l.Events[i]
		j := eventJSON{Seq: e.Seq, PCR: e.PCR, Digests: map[string]string{}, Anomaly: e.Anomaly}
		for _, d := range e.Digests {
			j.Digests[d.Alg.String()] = hex.EncodeToString(d.Value)
		}
		switch {
		case e.IMA != nil:
			j.Template, j.File = e.IMA.Template, e.IMA.FileName
			j.FileHash = e.IMA.FileHashAlgName + ":" + hex.EncodeToString(e.IMA.FileHash)
		case l.Format == eventlog.FormatTCG || e.ContentType == 5:
			j.Type = e.TypeName()
			j.Data = printable(e.Data)
			switch eventlog.EventType(e.Type) {
			case eventlog.EvEFIVariableDriverConfig, eventlog.EvEFIVariableBoot, eventlog.EvEFIVariableBoot2, eventlog.EvEFIVariableAuthority:
				if v, err := eventlog.ParseUEFIVariable(e.Data); err == nil {
					j.Data = fmt.Sprintf("%s (%d bytes)", v.Name, len(v.Data))
				}
			}
			if j.Data == "" && len(e.Data) > 0 {
				j.DataHex = hex.EncodeToString(trim(e.Data, 64))
			}
		default:
			j.DataHex = hex.EncodeToString(trim(e.Data, 64))
		}
		if e.PCR < 0 && e.IndexType == 2 {
			nv := e.NVIndex
			j.NVIndex = &nv
		}
		if *asJSON {
			enc.Encode(j)
			continue
		}
		desc := j.Type
		if j.Template != "" {
			desc = j.Template + " " + j.FileHash + " " + j.File
		} else if j.Data != "" {
			desc += " " + fmt.Sprintf("%q", j.Data)
		}
		first := ""
		if len(e.Digests) > 0 {
			first = e.Digests[0].Alg.String() + ":" + hex.EncodeToString(e.Digests[0].Value)
		}
		line := fmt.Sprintf("%4d  PCR %2d  %s  %s", e.Seq, e.PCR, first, desc)
		if e.Anomaly != "" {
			line += "  !! " + e.Anomaly
		}
		fmt.Fprintln(out, line)
	}
	return nil
}

func trim(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// printable returns b as text when it is (NUL-terminated) printable ASCII
// or UTF-16LE, which covers EFI actions, grub command lines and
// variable names; otherwise "".
func printable(b []byte) string {
	s := strings.TrimRight(string(b), "\x00")
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return ""
}
