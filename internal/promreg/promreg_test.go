package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterSharesAnEqualCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "c_total", Help: "h"}
	first, second := prometheus.NewCounter(opts), prometheus.NewCounter(opts)
	if err := Register(reg, &first); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg, &second); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	second.Inc()
	if got := testutil.ToFloat64(first); got != 1 {
		t.Errorf("the first collector counted %v, want 1: the second did not share it", got)
	}
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "c_total", Help: "other"})
	if err := Register(reg, &clash); err == nil {
		t.Error("a different collector under the same name registered")
	}
}
