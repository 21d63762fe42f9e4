package explain

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/test/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakeCluster is a cluster with meshinject installed from deploy/ (its
// webhook configurations and ConfigMap), istiod's tag configuration for
// istio.io/rev=blue, and namespaces with and without injection labels.
func fakeCluster(t *testing.T) *fake.Clientset {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "meshinject", Name: "meshinject-config"}, Data: map[string]string{}}
	for _, k := range []string{"config", "values", "mesh"} {
		b, err := os.ReadFile(filepath.Join("../../../../deploy/base/injector", k))
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[k] = string(b)
	}
	objs := []runtime.Object{cm,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop", "istio-injection": "enabled"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain", Labels: map[string]string{"kubernetes.io/metadata.name": "plain"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "blue", Labels: map[string]string{"kubernetes.io/metadata.name": "blue", "istio.io/rev": "blue"}}},
		istiodConfiguration("blue"),
	}
	for _, rev := range []string{"default", "canary"} {
		mwc, err := Webhooks(rev)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, mwc)
	}
	return fake.NewClientset(objs...)
}

// istiodConfiguration is istiod's revision configuration for rev.
func istiodConfiguration(rev string) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Labels: map[string]string{"istio.io/rev": rev}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "rev.namespace.sidecar-injector.istio.io",
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "istio.io/rev", Operator: metav1.LabelSelectorOpIn, Values: []string{rev}},
			}},
		}},
	}
}

func pod(name string, labels, annotations map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// TestCheckGolden checks pods of every kind against the fake cluster, as
// text (Istio's check-inject table and meshinject's verdict) and JSON.
func TestCheckGolden(t *testing.T) {
	t.Parallel()
	c := &Checker{Client: fakeCluster(t)}
	hostNet := func(p *corev1.Pod) { p.Spec.HostNetwork = true }
	target := func(ns string, p *corev1.Pod) Target {
		return Target{Object: Object{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: p.Name}, Pod: p, Existing: true}
	}
	injected := pod("injected", map[string]string{"app": "web"}, map[string]string{inject.AnnotationStatus: `{"containers":["istio-proxy"],"revision":"default"}`})
	targets := []Target{
		target("shop", injected),
		target("shop", pod("opted-out", map[string]string{"sidecar.istio.io/inject": "false"}, nil)),
		target("shop", pod("host-network", nil, nil, hostNet)),
		target("shop", pod("denied", nil, map[string]string{"sidecar.istio.io/proxyCPU": "fast"})),
		target("plain", pod("unlabelled", nil, nil)),
		target("plain", pod("annotation-opt-in", nil, map[string]string{"sidecar.istio.io/inject": "true"})),
		target("plain", pod("label-opt-in", map[string]string{"sidecar.istio.io/inject": "true"}, nil)),
		target("blue", pod("istiod-revision", nil, nil)),
		{Object: Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "reviews"}, Pod: pod("", map[string]string{"app": "reviews"}, nil)},
	}
	checks, err := c.CheckAll(t.Context(), targets)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	tw := tabwriter.NewWriter(&text, 0, 4, 2, ' ', 0)
	WriteChecks(tw, checks)
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(map[string]any{"items": checks}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/check.txt", text.String(), *update, "go test ./cmd/meshinject/app/explain -update")
	testutil.Golden(t, "testdata/check.json", string(js)+"\n", *update, "go test ./cmd/meshinject/app/explain -update")
}

// TestCheckConfigWarnings checks a pod against a cluster whose meshinject
// ConfigMap carries a values key injection does not read: the check warns,
// naming the key.
func TestCheckConfigWarnings(t *testing.T) {
	t.Parallel()
	client := fakeCluster(t)
	cms := client.CoreV1().ConfigMaps("meshinject")
	cm, err := cms.Get(t.Context(), "meshinject-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["values"] = "global:\n  proxy:\n    tracerr: datadog\n"
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := pod("app", nil, nil)
	checks, err := (&Checker{Client: client}).CheckAll(t.Context(), []Target{{Object: Object{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: p.Name}, Pod: p}})
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(checks[0].Warnings, "\n"); !strings.Contains(w, "global.proxy.tracerr") {
		t.Errorf("warnings %q do not name global.proxy.tracerr", checks[0].Warnings)
	}
}
