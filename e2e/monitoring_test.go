//go:build e2e

package e2e

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshinject/meshinject/test/testutil"
)

// TestMonitoringMetricNames: every metric name deploy/monitoring's alerts
// and the chart's dashboard query (deploy/monitoring/metrics.txt) is
// exported by meshinject serve or by kube-apiserver, once the API server
// has called a meshinject webhook, had a pod denied by it, and failed open
// on a webhook it could not call.
func TestMonitoringMetricNames(t *testing.T) {
	ctx := t.Context()
	ns := namespace(t, "monitoring", map[string]string{"istio-injection": "enabled"})
	create(t, ns, appPod("web"))
	if err := createErr(t, ns, appPod("denied", withAnnotations("traffic.sidecar.istio.io/includeInboundPorts", "http"))); err == nil {
		t.Fatal("a pod with a bad annotation was created")
	}
	create(t, ns, appPod("skipped", withAnnotations("sidecar.istio.io/inject", "false")))
	failOpen(t)
	if suite.local {
		reload(t)
	}

	exported := map[string]bool{}
	raw, err := suite.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("kube-apiserver /metrics: %v", err)
	}
	maps.Copy(exported, testutil.MetricNames(t, string(raw)))
	if suite.local {
		code, body := suite.def.get("/metrics")
		if code != 200 {
			t.Fatalf("meshinject /metrics: HTTP %d", code)
		}
		maps.Copy(exported, testutil.MetricNames(t, body))
	}
	data, err := os.ReadFile(filepath.Join(suite.repo, "deploy/monitoring/metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range strings.Split(string(data), "\n") {
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if !suite.local && !strings.HasPrefix(name, "apiserver_") {
			continue // meshinject runs in the cluster: its /metrics is not reached from here
		}
		checked++
		if !exported[name] {
			t.Errorf("%s: used by deploy/monitoring, exported by neither meshinject serve nor kube-apiserver", name)
		}
	}
	if checked < 3 {
		t.Fatalf("checked %d names of deploy/monitoring/metrics.txt", checked)
	}
}

// reload has the default server reload its configuration (a comment
// added to its mesh file, taken away when the test ends).
func reload(t *testing.T) {
	t.Helper()
	mesh := filepath.Join(suite.def.configDir, "mesh")
	orig, err := os.ReadFile(mesh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := writeAtomic(mesh, orig); err != nil {
			t.Error(err)
		}
	})
	if err := writeAtomic(mesh, append(append([]byte{}, orig...), "# reloaded by TestMonitoringMetricNames\n"...)); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "a configuration reload", func() error {
		if _, body := suite.def.get("/metrics"); !strings.Contains(body, `meshinject_config_reloads_total{result="success"}`) {
			return errors.New("no reload counted yet")
		}
		return nil
	})
}

// failOpen makes the API server fail open once: a webhook it cannot call,
// with failurePolicy Ignore, for a pod of a namespace of its own.
func failOpen(t *testing.T) {
	t.Helper()
	ns := namespace(t, "fail-open", map[string]string{"e2e-fail-open": "true"})
	ignore, none := admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-fail-open"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "fail-open.e2e.meshinject.istio.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/inject")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](2),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"e2e-fail-open": "true"}},
		}},
	}
	api := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Delete(t.Context(), mwc.Name, metav1.DeleteOptions{}) }()
	create(t, ns, appPod("uninjected"))
}
