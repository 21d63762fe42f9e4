//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestExplainAgreesWithAPIServer: for each kind of pod, `meshinject
// explain` (offline, told the namespace's labels) says the webhook is
// called exactly when the API server does call it for the same pod in a
// namespace with those labels, and gives the outcome the webhook gave.
func TestExplainAgreesWithAPIServer(t *testing.T) {
	cases := []struct {
		name     string
		nsLabels map[string]string
		pod      *corev1.Pod
	}{
		{"enabled", map[string]string{"istio-injection": "enabled"}, appPod("web")},
		{"unlabelled", nil, appPod("web")},
		{"opted-out", map[string]string{"istio-injection": "enabled"}, appPod("batch", withLabels("sidecar.istio.io/inject", "false"))},
		{"annotation-opt-in", nil, appPod("web", withAnnotations("sidecar.istio.io/inject", "true"))},
		{"label-opt-in", nil, appPod("web", withLabels("sidecar.istio.io/inject", "true"))},
		{"host-network", map[string]string{"istio-injection": "enabled"}, func() *corev1.Pod {
			p := appPod("agent")
			p.Spec.HostNetwork = true
			return p
		}()},
		{"denied", map[string]string{"istio-injection": "enabled"}, appPod("fast", withAnnotations("sidecar.istio.io/proxyCPU", "fast"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := namespace(t, "explain", c.nsLabels)
			verdict := explainPod(t, ns, c.nsLabels, c.pod, "--namespace-labels", labelList(c.nsLabels))
			if live := explainPod(t, ns, c.nsLabels, c.pod, "--kubeconfig", suite.kubeconfig); live != verdict {
				t.Errorf("explain --kubeconfig says %s, offline with the labels %s", live, verdict)
			}
			client, w := warningClient(t)
			got, err := client.CoreV1().Pods(ns).Create(t.Context(), c.pod, metav1.CreateOptions{})
			var outcome string
			switch {
			case err != nil && strings.Contains(err.Error(), "denied the request"):
				outcome = "denied"
			case err != nil:
				t.Fatal(err)
			case find(got.Spec.Containers, "istio-proxy") != nil || find(got.Spec.InitContainers, "istio-proxy") != nil:
				outcome = "injected"
			case containsSub(w.all(), "meshinject: not injected"):
				outcome = "skipped"
			default:
				outcome = "not-sent"
			}
			if verdict != outcome {
				t.Errorf("explain says %s; the API server and webhook did %s (warnings %v)", verdict, outcome, w.all())
			}
		})
	}
}

// explainPod runs meshinject explain -o json on pod in ns with the extra
// flags and returns its decision.
func explainPod(t *testing.T, ns string, nsLabels map[string]string, pod *corev1.Pod, flags ...string) string {
	t.Helper()
	p := pod.DeepCopy()
	p.APIVersion, p.Kind, p.Namespace = "v1", "Pod", ns
	in, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.meshinject, append([]string{"explain", "-o", "json", "-f", "-"}, flags...)...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("meshinject explain %v: %v", flags, err)
	}
	var doc struct {
		Items []struct {
			Decision struct{ Result string } `json:"decision"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Items) != 1 {
		t.Fatalf("meshinject explain -o json: %v\n%s", err, out)
	}
	return doc.Items[0].Decision.Result
}

// labelList writes labels as k=v,...
func labelList(labels map[string]string) string {
	var out []string
	for k, v := range labels {
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}
