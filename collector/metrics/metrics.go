// Package metrics is the collector's Prometheus metrics: polls by
// outcome, the time a poll and its appraisal take, the devices' quote
// latency, failures by reason, polls in flight and queued, and the fleet
// by verdict and policy set (read from the scheduler at each scrape).
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/veraison/ear"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/collector/verifier"
)

// Metrics holds the collector's metrics in their own registry.
type Metrics struct {
	reg      *prometheus.Registry
	polls    *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration prometheus.Histogram
	quote    prometheus.Histogram
	inFlight prometheus.Gauge
}

// Fleet is what the metrics read from the scheduler at each scrape.
type Fleet interface {
	// PostureByPolicy counts devices by policy set and state
	// ("affirming", "warning", "contraindicated", "none", "unreachable",
	// "pending"); the counts by state alone are its sums (one read of
	// the fleet per scrape: with leases, it reads the store).
	PostureByPolicy() map[[2]string]int
	// Queued is the number of polls waiting for a slot.
	Queued() int
}

// New registers the metrics; fleet is read at each scrape (it may be set
// up after New, as long as it is before the first scrape).
func New(fleet func() Fleet) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riv_collector_polls_total", Help: "Polls of devices by outcome: the verdict, or unreachable.",
		}, []string{"outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riv_collector_poll_failures_total", Help: "Polls that did not affirm, by reason: the trust-vector component of each claim against the device, or why it could not be reached (timeout, refused, busy, protocol).",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "riv_collector_poll_duration_seconds", Help: "Time a poll takes: reaching the device, its quote and logs, the appraisal.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		quote: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "riv_collector_device_quote_duration_seconds", Help: "Time a device takes to answer the challenge (its TPM quote, with the logs pipelined after it).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riv_collector_polls_in_flight", Help: "Polls running now.",
		}),
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "riv_collector_polls_queued", Help: "Polls that are due and wait for a slot (poll.max_in_flight): growing means the collector falls behind.",
	}, func() float64 { return float64(fleet().Queued()) })
	m.reg.MustRegister(m.polls, m.failures, m.duration, m.quote, m.inFlight, queued, &fleetCollector{fleet: fleet},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Started and Done bracket one poll; outcome is its verdict or
// "unreachable".
func (m *Metrics) Started() { m.inFlight.Inc() }

// Done records a finished poll.
func (m *Metrics) Done(r *verifier.Result, err error, took time.Duration) {
	m.inFlight.Dec()
	m.duration.Observe(took.Seconds())
	if err != nil {
		m.polls.WithLabelValues("unreachable").Inc()
		m.failures.WithLabelValues(unreachableReason(err)).Inc()
		return
	}
	m.polls.WithLabelValues(r.Status.String()).Inc()
	if r.QuoteLatency > 0 {
		m.quote.Observe(r.QuoteLatency.Seconds())
	}
	if r.Status == ear.TrustTierAffirming {
		return
	}
	seen := map[string]bool{}
	for _, reason := range r.Reasons {
		// Reasons start with their component ("executables: ..."),
		// after a TPM's name on a device with several.
		for _, c := range components {
			if strings.Contains(reason, c+": ") && !seen[c] {
				seen[c] = true
				m.failures.WithLabelValues(c).Inc()
			}
		}
	}
	if len(seen) == 0 {
		m.failures.WithLabelValues("other").Inc()
	}
}

// components are the AR4SI trust-vector components, as reasons name them.
var components = []string{"instance-identity", "configuration", "executables", "file-system", "hardware", "runtime-opaque", "storage-opaque", "sourced-data"}

// unreachableReason sorts an unreachable device's error into a few
// bounded label values.
func unreachableReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, evidence.ErrBusy):
		return "busy"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, evidence.ErrRefused):
		return "protocol"
	}
	return "unreachable"
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	devicesDesc = prometheus.NewDesc("riv_collector_devices", "Devices by state: their latest verdict, unreachable or pending.", []string{"state"}, nil)
	policyDesc  = prometheus.NewDesc("riv_collector_devices_by_policy", "Devices by policy set and state.", []string{"policy", "state"}, nil)
)

type fleetCollector struct{ fleet func() Fleet }

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc; ch <- policyDesc }

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	byState := map[string]int{}
	for k, n := range c.fleet().PostureByPolicy() {
		byState[k[1]] += n
		ch <- prometheus.MustNewConstMetric(policyDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(n), state)
	}
}
