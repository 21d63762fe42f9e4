//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkResult is what meshinject check-inject -o json says of one pod.
type checkResult struct {
	Webhooks []struct {
		Webhook  string `json:"webhook"`
		Injected bool   `json:"injected"`
		Reason   string `json:"reason"`
	} `json:"webhooks"`
	Injected string `json:"injected"`
	Verdict  struct {
		Result string `json:"result"`
		Reason string `json:"reason"`
	} `json:"verdict"`
	Warnings []string `json:"warnings"`
}

// meshinjectCheck runs meshinject check-inject -o json against the suite's
// cluster.
func meshinjectCheck(t *testing.T, args ...string) []checkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.meshinject, append([]string{"check-inject", "-o", "json", "--kubeconfig", suite.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("meshinject check-inject %v: %v\n%s", args, err, out)
	}
	var doc struct{ Items []checkResult }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("meshinject check-inject -o json: %v\n%s", err, out)
	}
	return doc.Items
}

// ours is meshinject's row of a check.
func (c checkResult) ours(t *testing.T) (bool, string) {
	t.Helper()
	for _, w := range c.Webhooks {
		if w.Webhook == mwcDefault {
			return w.Injected, w.Reason
		}
	}
	t.Fatalf("check-inject does not list %s: %+v", mwcDefault, c.Webhooks)
	return false, ""
}

// TestMeshinjectCheckInject: meshinject check-inject reads the live
// namespace labels, webhook configurations and meshinject's ConfigMap, and
// for each kind of pod says whether meshinject's webhook is called, what
// meshinject's engine decides, and warns when a second injector matches.
func TestMeshinjectCheckInject(t *testing.T) {
	needsLocal(t)
	enabled := namespace(t, "ci-on", map[string]string{"istio-injection": "enabled"})
	plain := namespace(t, "ci-off", nil)
	create(t, enabled, appPod("web"))
	create(t, enabled, appPod("optout", withLabels("sidecar.istio.io/inject", "false")))
	hostNet := appPod("agent")
	hostNet.Spec.HostNetwork = true
	create(t, enabled, hostNet)
	create(t, plain, appPod("annotated", withAnnotations("sidecar.istio.io/inject", "true")))
	deployment(t, enabled, "reviews", 0, nil, nil, false)
	cases := []struct {
		args          []string
		called        bool
		reason        string
		injected      string
		verdict, note string
	}{
		{[]string{"-n", enabled, "web"}, true, "namespace.meshinject.istio.io matches", "revision default", "injected", "templates sidecar"},
		{[]string{"-n", enabled, "optout"}, false, "pod label sidecar.istio.io/inject=false (excluded)", "", "not-sent", "skip it: label sidecar.istio.io/inject=false"},
		{[]string{"-n", enabled, "agent"}, false, "match condition not-host-network is false", "", "not-sent", "skip it: pod has hostNetwork"},
		{[]string{"-n", plain, "annotated"}, false, "pod label sidecar.istio.io/inject is not set (want true)", "", "not-sent", "the engine would inject it"},
		{[]string{"-n", enabled, "deployment/reviews"}, true, "namespace.meshinject.istio.io matches", "", "injected", "templates sidecar"},
		{[]string{"-n", plain, "-l", "app=nothing"}, false, "namespace label istio-injection is not set (want enabled)", "", "not-sent", "the engine would inject it"},
	}
	for _, c := range cases {
		got := meshinjectCheck(t, c.args...)
		if len(got) != 1 {
			t.Fatalf("%v: %d results", c.args, len(got))
		}
		r := got[0]
		called, reason := r.ours(t)
		if called != c.called || !strings.Contains(reason, c.reason) {
			t.Errorf("%v: %s called=%v (%s), want %v with %q", c.args, mwcDefault, called, reason, c.called, c.reason)
		}
		if r.Injected != c.injected || r.Verdict.Result != c.verdict || !strings.Contains(r.Verdict.Reason, c.note) {
			t.Errorf("%v: injected %q, verdict %s (%s); want %q, %s with %q", c.args, r.Injected, r.Verdict.Result, r.Verdict.Reason, c.injected, c.verdict, c.note)
		}
		if len(r.Warnings) != 0 {
			t.Errorf("%v: warnings %v", c.args, r.Warnings)
		}
	}

	// A second injector for the same namespaces: check-inject warns.
	other := istioRevisionConfiguration("e2e-other")
	other.Name = "istio-revision-tag-default"
	other.Labels = map[string]string{"istio.io/rev": "e2e-other", "istio.io/tag": "default"}
	other.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"istio-injection": "enabled"}}
	other.Webhooks[0].ObjectSelector = nil
	other.Webhooks = other.Webhooks[:1]
	ignore := admissionregistrationv1.Ignore // istiod-e2e-other does not exist; pods must still be created
	other.Webhooks[0].FailurePolicy = &ignore
	mwcs := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := mwcs.Create(t.Context(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mwcs.Delete(context.Background(), other.Name, metav1.DeleteOptions{}) })
	r := meshinjectCheck(t, "-n", enabled, "web")[0]
	if len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "2 webhook configurations would inject") {
		t.Errorf("two injectors match, check-inject warns %v", r.Warnings)
	}
	// The text form, as the README shows it.
	text, err := exec.CommandContext(t.Context(), suite.meshinject, "check-inject", "--kubeconfig", suite.kubeconfig, "-n", enabled, "web").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "WARNING: 2 webhook configurations would inject") {
		t.Errorf("meshinject check-inject (text): %v\n%s", err, text)
	}
	t.Logf("meshinject check-inject -n %s web:\n%s", enabled, text)
}
