package netconf

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/logsrc"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/tpm"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChallengeOverhead measures what the agent adds to TPM2_Quote
// per challenge: parsing the RPC, validation, the quote, the unsigned PCR
// read-out and encoding the reply, against the bare TPM2_Quote +
// TPM2_PCR_Read the reply needs (simulator TPM). Targets: at most 2 ms wall
// and 1 ms CPU added.
func BenchmarkChallengeOverhead(b *testing.B) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	iak, err := tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		b.Fatal(err)
	}
	a, err := attester.New(ctx, attester.Config{TPM: tp, Logs: logsrc.NewMemory(), QuotesPerSecond: 1e9, QuoteBurst: 1 << 30,
		Certificates: []attester.Certificate{{Name: "iak", Type: attester.CertIAK, Key: iak}}})
	if err != nil {
		b.Fatal(err)
	}
	s, _ := New(Config{Attester: a})
	ss := &session{id: 1, user: "bench"}
	s.cfg.NACM.Disabled = true
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
	var rounds int
	var wallRPC, wallTPM, cpuRPC, cpuTPM time.Duration
	for b.Loop() {
		rounds++
		nonce := fmt.Sprintf("%032d", rounds)
		msg := []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"><tpm20-challenge-response-attestation xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><tpm20-attestation-challenge><nonce-value>` +
			b64([]byte(nonce)) + `</nonce-value><tpm20-pcr-selection><tpm20-hash-algo xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs">taa:TPM_ALG_SHA256</tpm20-hash-algo><pcr-index>0</pcr-index><pcr-index>1</pcr-index><pcr-index>2</pcr-index><pcr-index>3</pcr-index><pcr-index>4</pcr-index><pcr-index>5</pcr-index><pcr-index>6</pcr-index><pcr-index>7</pcr-index><pcr-index>8</pcr-index><pcr-index>9</pcr-index><pcr-index>10</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation></rpc>`)
		c0, t0 := cpuTime(), time.Now()
		reply, _ := s.handle(ctx, ss, msg)
		wallRPC += time.Since(t0)
		cpuRPC += cpuTime() - c0
		if len(reply) < 500 {
			b.Fatalf("reply %s", reply)
		}
		c1, t1 := cpuTime(), time.Now()
		if _, _, err := tp.Quote(ctx, iak, []byte(nonce), sel); err != nil {
			b.Fatal(err)
		}
		if _, err := tp.ReadPCRs(ctx, sel); err != nil {
			b.Fatal(err)
		}
		wallTPM += time.Since(t1)
		cpuTPM += cpuTime() - c1
	}
	n := time.Duration(rounds)
	b.ReportMetric(float64((wallRPC-wallTPM)/n)/1e3, "µs-wall-added")
	b.ReportMetric(float64((cpuRPC-cpuTPM)/n)/1e3, "µs-cpu-added")
	b.ReportMetric(float64(wallTPM/n)/1e3, "µs-tpm")
}
