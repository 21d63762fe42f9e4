package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/test/testutil"
)

const refreshMonitoring = "go test ./deploy -run TestMonitoringFiles -update"

// monitoringFiles are deploy/monitoring's files and the chart's kinds they
// hold, rendered for the default revision in namespace meshinject.
var monitoringFiles = map[string]string{
	"podmonitor.yaml":        "PodMonitor meshinject/meshinject",
	"prometheusrule.yaml":    "PrometheusRule meshinject/meshinject",
	"grafana-dashboard.yaml": "ConfigMap meshinject/meshinject-dashboard",
}

// TestMonitoringFiles keeps deploy/monitoring (the observability bundle for
// kubectl apply -k) equal to what the chart renders: its PodMonitor,
// PrometheusRule and dashboard ConfigMap, and the rules as a plain
// Prometheus rule file (rules.yaml), which promtool checks and tests.
func TestMonitoringFiles(t *testing.T) {
	objs := withoutHelmLabels(objects(t, helmTemplate(t,
		"metrics.podMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "dashboards.enabled=true")))
	for file, key := range monitoringFiles {
		o, ok := objs[key]
		if !ok {
			t.Fatalf("the chart rendered no %s", key)
		}
		testutil.Golden(t, filepath.Join("monitoring", file), marshal(t, o), *update, refreshMonitoring)
	}
	spec := objs["PrometheusRule meshinject/meshinject"]["spec"]
	testutil.Golden(t, "monitoring/rules.yaml", rulesHeader+marshal(t, spec), *update, refreshMonitoring)
}

const rulesHeader = `# meshinject's alerts as a plain Prometheus rule file, for a Prometheus
# without the operator (generated from the chart: ` + refreshMonitoring + `).
# They select the injector's metrics by job="meshinject": scrape it under
# that job name.
`

func marshal(t *testing.T, v any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestPromtoolRules runs promtool check rules and promtool test rules on
// deploy/monitoring, and requires a test case that fires each alert.
func TestPromtoolRules(t *testing.T) {
	run(t, "promtool", "check", "rules", "monitoring/rules.yaml")
	out := run(t, "promtool", "test", "rules", "monitoring/rules_test.yaml")
	t.Logf("promtool test rules:\n%s", out)

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, "monitoring/rules.yaml", &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTests []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, "monitoring/rules_test.yaml", &tests)
	fired := map[string]bool{}
	for _, c := range tests.Tests {
		for _, a := range c.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fired[r.Alert] {
				t.Errorf("alert %s: no test in monitoring/rules_test.yaml expects it to fire", r.Alert)
			}
		}
	}
}

// TestMonitoringMetricNames lists, with Prometheus' own PromQL parser
// (promnames), the metric names the rules and the dashboard query, in
// deploy/monitoring/metrics.txt. The server's tests scrape meshinject serve
// for each of meshinject's names, the e2e suite kube-apiserver for the
// API server's.
func TestMonitoringMetricNames(t *testing.T) {
	out := string(run(t, "promnames", "monitoring/rules.yaml", "charts/meshinject/files/dashboard.json"))
	names := strings.Fields(out)
	if !slices.Contains(names, "sidecar_injection_requests_total") {
		t.Fatalf("promnames found no sidecar_injection_requests_total in:\n%s", out)
	}
	testutil.Golden(t, "monitoring/metrics.txt", metricsHeader+out, *update, "go test ./deploy -run TestMonitoringMetricNames -update")
}

const metricsHeader = `# The metric names deploy/monitoring's rules and the chart's dashboard
# query (go test ./deploy -run TestMonitoringMetricNames -update). Each is
# exported by meshinject serve or by kube-apiserver (apiserver_*); tests
# scrape both for them.
`

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
