package testutil

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricFamilies parses a Prometheus text exposition.
func MetricFamilies(t testing.TB, exposition string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("parse the metrics exposition: %v", err)
	}
	return fams
}

// MetricNames are the sample names of a Prometheus text exposition, as
// queries name them: a histogram's _bucket, _sum and _count, a summary's
// own name, _sum and _count.
func MetricNames(t testing.TB, exposition string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for name, f := range MetricFamilies(t, exposition) {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
		default:
			names[name] = true
		}
	}
	return names
}
