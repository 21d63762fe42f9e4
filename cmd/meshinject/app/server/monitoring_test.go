package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshinject/meshinject/test/testutil"
)

// reviewOf is an AdmissionReview of a pod with the given annotations (JSON).
func reviewOf(annotations string) string {
	return strings.Replace(review, `"metadata":{"name":"web"}`, `"metadata":{"name":"web","annotations":`+annotations+`}`, 1)
}

// needsCluster are metrics meshinject serve exports only with cluster
// access (the Events queue); the e2e suite checks them.
var needsCluster = map[string]bool{"meshinject_events_dropped_total": true}

// TestMonitoringMetricsExported scrapes meshinject serve after an
// injection, a skip, a denial and a refused configuration change, and
// requires every metric name deploy/monitoring's alerts and the chart's
// dashboard query (deploy/monitoring/metrics.txt) that is meshinject's
// own: a renamed metric breaks this test, not the alerts in production.
func TestMonitoringMetricsExported(t *testing.T) {
	t.Parallel()
	configDir := t.TempDir()
	for _, f := range []string{"config", "values", "mesh"} {
		data, err := os.ReadFile(filepath.Join("../../../../deploy/base/injector", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(configDir, f), data)
	}
	metrics := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	url, _, ca := startServer(t, t.TempDir(), Options{ConfigDir: configDir, MetricsAddr: metrics})
	c := client(ca, false)
	for _, body := range []string{review, reviewOf(`{"sidecar.istio.io/inject":"false"}`), reviewOf(`{"sidecar.istio.io/interceptionMode":"BOGUS"}`)} {
		resp, err := c.Post(url+"/inject", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	writeFile(t, filepath.Join(configDir, "config"), []byte("policy: [unclosed\n"))

	want := wantedNames(t)
	var missing []string
	testutil.Poll(t, 20*time.Second, 100*time.Millisecond, "the refused configuration in /metrics", func() error {
		exported := scrapeNames(t, "http://"+metrics+"/metrics")
		missing = missing[:0]
		for _, n := range want {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return &missingNames{missing}
		}
		return nil
	})
}

type missingNames struct{ names []string }

func (m *missingNames) Error() string { return "not exported: " + strings.Join(m.names, ", ") }

// wantedNames are meshinject's names in deploy/monitoring/metrics.txt.
func wantedNames(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../../../deploy/monitoring/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "apiserver_") || needsCluster[l] {
			continue
		}
		names = append(names, l)
	}
	if len(names) < 5 {
		t.Fatalf("deploy/monitoring/metrics.txt lists only %v", names)
	}
	return names
}

// scrapeNames are the sample names /metrics exports.
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.MetricNames(t, string(body))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
