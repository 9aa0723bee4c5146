package eventlog

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
)

// fuzzLog checks the invariants every parser owes untrusted input: no
// panic, no hang, and a parsed log can always be replayed, shown and
// re-encoded without panicking.
func fuzzLog(t *testing.T, l *Log, err error) {
	if err != nil {
		return
	}
	l.Replay(ReplayOptions{})
	l.Replay(ReplayOptions{Banks: []alg.ID{alg.SHA256}, IMAPadSHA1: true})
	l.CheckDigests()
	// The verifier's shortcut decides as the full extraction does.
	sb := l.SecureBoot()
	if on, conflicts := l.SecureBootMode(); on != sb.Enabled || !slices.Equal(conflicts, sb.Conflicts) {
		t.Fatalf("SecureBootMode() = %v %q, SecureBoot() = %v %q", on, conflicts, sb.Enabled, sb.Conflicts)
	}
	for _, f := range []Format{FormatCELTLV, FormatCELJSON, FormatCELCBOR} {
		WriteCEL(l, f)
	}
}

// hangGuard crashes the fuzz worker when one input takes more than ten
// seconds, so the fuzzer saves it: a hang on hostile input is a bug.
func hangGuard() func() bool {
	return time.AfterFunc(10*time.Second, func() { panic("input took more than 10s: hang") }).Stop
}

func addFiles(f *testing.F, pattern string) {
	files, _ := filepath.Glob(testref.Path(f, pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil && len(b) < 16<<10 {
			f.Add(b)
		}
	}
}

func FuzzParseTCG(f *testing.F) {
	addFiles(f, "eventlogs/uefi/*/*.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseTCG(b)
		fuzzLog(t, l, err)
		if err == nil && len(l.Banks) > 0 {
			if out, err := WriteTCG(l); err == nil {
				if _, err := ParseTCG(out); err != nil {
					t.Fatalf("re-parse of written log: %v", err)
				}
			}
		}
	})
}

func FuzzParseIMA(f *testing.F) {
	addFiles(f, "eventlogs/ima/ibmtss/*.bin")
	f.Add(testref.Read(f, "eventlogs/ima/charra/binary_runtime_measurements")[:4096])
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseIMA(b)
		fuzzLog(t, l, err)
	})
}

func FuzzParseIMAASCII(f *testing.F) {
	addFiles(f, "eventlogs/ima/keylime/*.txt")
	f.Add(testref.Read(f, "eventlogs/ima/charra/ascii_runtime_measurements")[:4096])
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseIMAASCII(b)
		fuzzLog(t, l, err)
	})
}

func FuzzParseCELTLV(f *testing.F) {
	b64 := testref.Read(f, "eventlogs/cel/go-tpm-tools-cos-launcher-cel.b64")
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	f.Add(raw)
	if l, err := ParseTCG(testref.Read(f, "eventlogs/uefi/hirs/TpmLog.bin")); err == nil {
		out, _ := WriteCEL(l, FormatCELTLV)
		f.Add(out)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseCELTLV(b)
		fuzzLog(t, l, err)
	})
}

func FuzzParseCELCBOR(f *testing.F) {
	if l, err := ParseTCG(testref.Read(f, "eventlogs/uefi/hirs/TpmLog.bin")); err == nil {
		out, _ := WriteCEL(l, FormatCELCBOR)
		f.Add(out)
	}
	if l, err := ParseIMAASCII(testref.Read(f, "eventlogs/ima/keylime/ima-log-sha256.txt")); err == nil {
		out, _ := WriteCEL(l, FormatCELCBOR)
		f.Add(out)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseCELCBOR(b)
		fuzzLog(t, l, err)
	})
}

func FuzzParseCELJSON(f *testing.F) {
	if l, err := ParseTCG(testref.Read(f, "eventlogs/uefi/hirs/TpmLog.bin")); err == nil {
		out, _ := WriteCEL(l, FormatCELJSON)
		f.Add(out)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := ParseCELJSON(b)
		fuzzLog(t, l, err)
	})
}

func FuzzParseAuto(f *testing.F) {
	addFiles(f, "eventlogs/uefi/tpm2-tools/*.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard()()
		l, err := Parse(b, FormatAuto)
		fuzzLog(t, l, err)
	})
}
