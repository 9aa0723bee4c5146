package eventlog

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// TestIMAReplayNeverTrustsTemplateDigest is the lie of a device that
// measured /usr/bin/backdoor and reports the entry under the name and
// hash of a signed file, keeping the backdoor's template digest so that
// the log still "replays" to PCR 10. The replay must follow the template
// data in every bank (in the logged digest's bank too), so the forged log
// never reproduces what the TPM holds, and CheckDigests names the entry.
func TestIMAReplayNeverTrustsTemplateDigest(t *testing.T) {
	banks := []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384}
	good := alg.SHA256.Sum([]byte("sshd as the vendor built it"))
	evil := alg.SHA256.Sum([]byte("backdoor"))
	for _, logBank := range banks {
		for _, replayBank := range banks {
			t.Run(fmt.Sprintf("%v digests, %v bank", logBank, replayBank), func(t *testing.T) {
				agg := IMAEntryFor(10, alg.SHA256, make([]byte, 32), "boot_aggregate", nil, banks)
				measured := IMAEntryFor(10, alg.SHA256, evil, "/usr/bin/backdoor", nil, banks)
				// What the TPM holds: the real measurements extended, computed
				// here without Replay.
				tpm := pcr.Values{}
				tpm.Set(replayBank, 10, extend(replayBank, pcr.Initial(replayBank, 10), agg.Digest(replayBank), measured.Digest(replayBank)))
				// What the device reports: the signed file's fields, the
				// backdoor's template digest in logBank.
				forged := IMAEntryFor(10, alg.SHA256, good, "/usr/sbin/sshd", nil, banks)
				forged.Digests = []Digest{{Alg: logBank, Value: measured.Digest(logBank)}}
				agg.Digests = []Digest{{Alg: logBank, Value: agg.Digest(logBank)}}
				l := &Log{Format: FormatIMA, Banks: []alg.ID{logBank}, Events: []Event{agg, forged}}
				got, err := l.Replay(ReplayOptions{Banks: []alg.ID{replayBank}})
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(got.Get(replayBank, 10), tpm.Get(replayBank, 10)) {
					t.Errorf("forged log replays to the TPM's PCR 10 (%x)", got.Get(replayBank, 10))
				}
				if d := got.Diff(pcr.Values{replayBank: {10: tpm.Get(replayBank, 10)}}); len(d) == 0 {
					t.Error("Diff finds no difference")
				}
				if n := l.CheckDigests(logBank); n != 1 || l.Events[1].Anomaly == "" || l.Events[0].Anomaly != "" {
					t.Errorf("CheckDigests(%v) = %d, anomalies %q %q; want the forged entry named", logBank, n, l.Events[0].Anomaly, l.Events[1].Anomaly)
				}
				// The pre-5.8 rule derives the SHA-1 from the data as well.
				if pad, err := l.Replay(ReplayOptions{Banks: []alg.ID{replayBank}, IMAPadSHA1: true}); err == nil && replayBank != alg.SHA1 {
					padTo := func(d []byte) []byte { return append(bytes.Clone(d), make([]byte, replayBank.Size()-len(d))...) }
					honest := extend(replayBank, pcr.Initial(replayBank, 10), padTo(agg.Digest(alg.SHA1)), padTo(measured.Digest(alg.SHA1)))
					if bytes.Equal(pad.Get(replayBank, 10), honest) {
						t.Error("forged log replays under the pre-5.8 padding rule")
					}
				}
			})
		}
	}
}

// extend is TPM2_PCR_Extend of each digest in turn.
func extend(b alg.ID, v []byte, ds ...[]byte) []byte {
	for _, d := range ds {
		v = b.Sum(append(bytes.Clone(v), d...))
	}
	return v
}
