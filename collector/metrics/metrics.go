// Package metrics is the collector's Prometheus metrics: polls by
// outcome, the time a poll takes, polls in flight, and the fleet by
// verdict (read from the scheduler at each scrape).
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collector's metrics in their own registry.
type Metrics struct {
	reg      *prometheus.Registry
	polls    *prometheus.CounterVec
	duration prometheus.Histogram
	inFlight prometheus.Gauge
}

// New registers the metrics; fleet, called at each scrape, counts the
// devices by state ("affirming", "warning", "contraindicated", "none",
// "unreachable", "pending").
func New(fleet func() map[string]int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riv_collector_polls_total", Help: "Polls of devices by outcome: the verdict, or unreachable.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "riv_collector_poll_duration_seconds", Help: "Time a poll takes: reaching the device, its quote and logs, the appraisal.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riv_collector_polls_in_flight", Help: "Polls running now.",
		}),
	}
	m.reg.MustRegister(m.polls, m.duration, m.inFlight, &fleetCollector{fleet: fleet},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Started and Done bracket one poll; outcome is its verdict or
// "unreachable".
func (m *Metrics) Started() { m.inFlight.Inc() }

// Done records a finished poll.
func (m *Metrics) Done(outcome string, took time.Duration) {
	m.inFlight.Dec()
	m.polls.WithLabelValues(outcome).Inc()
	m.duration.Observe(took.Seconds())
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var devicesDesc = prometheus.NewDesc("riv_collector_devices", "Devices by state: their latest verdict, unreachable or pending.", []string{"state"}, nil)

type fleetCollector struct{ fleet func() map[string]int }

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc }

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	for state, n := range c.fleet() {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(n), state)
	}
}
