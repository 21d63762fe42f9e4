package webhook

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshinject/meshinject/internal/promreg"
)

// metrics are the injection metrics, under Istio's names so existing
// dashboards work. Label values are bounded: skip and failure reasons are
// fixed kinds, never pod or annotation text. A nil *metrics records nothing.
type metrics struct {
	requests  *prometheus.CounterVec
	successes *prometheus.CounterVec
	skips     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  prometheus.Histogram
	namespace bool
}

// MetricsOptions configures NewMetrics.
type MetricsOptions struct {
	// NamespaceLabel adds a namespace label to the request, success, skip
	// and failure counters. Default off: a series per namespace can be
	// many series.
	NamespaceLabel bool
}

// NewMetrics creates the metrics and registers them with reg, sharing
// those already there (promreg.Register).
func NewMetrics(reg prometheus.Registerer, opts MetricsOptions) (*metrics, error) {
	labels := func(l ...string) []string {
		if opts.NamespaceLabel {
			l = append(l, "namespace")
		}
		return l
	}
	m := &metrics{namespace: opts.NamespaceLabel,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_requests_total", Help: "Total number of sidecar injection requests.",
		}, labels()),
		successes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_success_total", Help: "Total number of successful sidecar injection requests.",
		}, labels()),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_skip_total", Help: "Total number of skipped sidecar injection requests, by reason.",
		}, labels("reason")),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injection_failure_total", Help: "Total number of failed sidecar injection requests, by reason.",
		}, labels("reason")),
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

// reviewMetrics records one review's metrics, in its namespace's series
// when the metrics have the label. The zero value records nothing.
type reviewMetrics struct {
	m  *metrics
	ns string
}

// review is the recorder of a review in namespace ns.
func (m *metrics) review(ns string) reviewMetrics { return reviewMetrics{m: m, ns: ns} }

// labels are the label values with the namespace when the metrics have it.
func (r reviewMetrics) labels(l ...string) []string {
	if r.m.namespace {
		return append(l, r.ns)
	}
	return l
}

func (r reviewMetrics) request() {
	if r.m != nil {
		r.m.requests.WithLabelValues(r.labels()...).Inc()
	}
}

func (r reviewMetrics) success(d time.Duration) {
	if r.m != nil {
		r.m.successes.WithLabelValues(r.labels()...).Inc()
		r.m.duration.Observe(d.Seconds())
	}
}

func (r reviewMetrics) skip(kind string) {
	if r.m != nil {
		r.m.skips.WithLabelValues(r.labels(kind)...).Inc()
	}
}

func (r reviewMetrics) failure(reason string) {
	if r.m != nil {
		r.m.failures.WithLabelValues(r.labels(reason)...).Inc()
	}
}
