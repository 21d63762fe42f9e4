package webhook

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshinject/meshinject/internal/promreg"
)

// Metrics are the injection metrics, under Istio's names so existing
// dashboards work. Label values are bounded: skip and failure reasons are
// fixed kinds, never pod or annotation text. A nil *Metrics records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec
	successes prometheus.Counter
	skips     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg, sharing
// those already there (promreg.Register).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_requests_total", Help: "Total number of sidecar injection requests.",
		}, nil),
		successes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_injection_success_total", Help: "Total number of successful sidecar injection requests.",
		}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_skip_total", Help: "Total number of skipped sidecar injection requests, by reason.",
		}, []string{"reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_failure_total", Help: "Total number of failed sidecar injection requests, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sidecar_injection_time_seconds", Help: "Time taken to inject a pod.",
			Buckets: injectionBuckets(),
		}),
	}
	err := errors.Join(promreg.Register(reg, &m.requests), promreg.Register(reg, &m.successes),
		promreg.Register(reg, &m.skips), promreg.Register(reg, &m.failures), promreg.Register(reg, &m.duration))
	if err != nil {
		return nil, fmt.Errorf("register injection metrics: %w", err)
	}
	return m, nil
}

// istioBuckets are the bucket boundaries of Istio's own
// sidecar_injection_time_seconds, so alerts and dashboards written for
// istiod's injector read this histogram unchanged.
var istioBuckets = []float64{.1, 1, 3, 5, 10, 20, 30, 60}

// injectionBuckets are ours, 50µs to ~1.6s by doubling (injection usually
// takes well under a millisecond), and Istio's, sorted.
func injectionBuckets() []float64 {
	b := append(prometheus.ExponentialBuckets(0.00005, 2, 16), istioBuckets...)
	slices.Sort(b)
	return slices.Compact(b)
}

func (m *Metrics) request() {
	if m != nil {
		m.requests.WithLabelValues().Inc()
	}
}

func (m *Metrics) success(d time.Duration) {
	if m != nil {
		m.successes.Inc()
		m.duration.Observe(d.Seconds())
	}
}

func (m *Metrics) skip(kind string) {
	if m != nil {
		m.skips.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) failure(reason string) {
	if m != nil {
		m.failures.WithLabelValues(reason).Inc()
	}
}
