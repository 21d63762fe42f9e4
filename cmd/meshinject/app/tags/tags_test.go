package tags

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshinject/meshinject/cmd/meshinject/app/explain"
	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
)

// revision is revision rev's configuration as deploy/ installs it, its
// entries calling the Service meshinject-<rev>.
func revision(t *testing.T, rev string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	mwc, err := explain.Webhooks(rev)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.Service.Name = "meshinject-" + rev
		mwc.Webhooks[i].ClientConfig.CABundle = []byte("CA of " + rev)
	}
	return mwc
}

// configMap is revision rev's configuration, deploy/'s with the proxy
// image tag replaced by tag.
func configMap(t *testing.T, rev, tag string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "meshinject", Name: "meshinject-" + rev + "-config"}, Data: map[string]string{}}
	for _, k := range []string{"config", "values", "mesh"} {
		b, err := os.ReadFile(filepath.Join("../../../../deploy/base/injector", k))
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[k] = string(b)
	}
	cm.Data["values"] = strings.Replace(cm.Data["values"], "tag: 1.31.4", "tag: "+tag, 1)
	if cm.Data["values"] == "" || !strings.Contains(cm.Data["values"], "tag: "+tag) {
		t.Fatalf("no proxy tag in deploy/base/injector/values")
	}
	return cm
}

func ns(name string, labels ...string) *corev1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func TestSetMovesATagOnlyWhenTold(t *testing.T) {
	ctx := context.Background()
	m := &Manager{Client: fake.NewClientset(revision(t, "a"), revision(t, "b"))}
	got, err := m.Set(ctx, "default", SetOptions{Revision: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelRevision] != "a" || len(got.Webhooks) != 4 || string(got.Webhooks[0].ClientConfig.CABundle) != "CA of a" {
		t.Fatalf("tag default for a: labels %v, %d entries, caBundle %q", got.Labels, len(got.Webhooks), got.Webhooks[0].ClientConfig.CABundle)
	}
	if _, err := m.Set(ctx, "default", SetOptions{Revision: "b"}); err == nil || !strings.Contains(err.Error(), `points to revision "a": --overwrite`) {
		t.Fatalf("moving without --overwrite: %v", err)
	}
	got, err = m.Set(ctx, "default", SetOptions{Revision: "b", Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, Name("default"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Labels[LabelRevision] != "b" || stored.Webhooks[0].ClientConfig.Service.Name != "meshinject-b" {
		t.Errorf("after --overwrite the tag serves %s through %s, want b", stored.Labels[LabelRevision], stored.Webhooks[0].ClientConfig.Service.Name)
	}
	if diff := cmp.Diff(got.Webhooks, stored.Webhooks); diff != "" {
		t.Errorf("Set returned other entries than it stored:\n%s", diff)
	}
}

func TestSetRefuses(t *testing.T) {
	ctx := context.Background()
	m := &Manager{Client: fake.NewClientset(revision(t, "default"), revision(t, "a"), revision(t, "prod"))}
	for _, c := range []struct{ tag, rev, want string }{
		{"default", "default", "the default revision already injects"},
		{"default", "", "the default revision already injects"},
		{"a", "a", "cannot name its own revision"},
		{"prod", "a", `"prod": that is a revision's name`},
		{"Prod_1", "a", `tag "Prod_1"`},
		{"a b", "a", `tag "a b": a lowercase RFC 1123 label`},
		{"stable", "missing", `revision "missing": no MutatingWebhookConfiguration is labelled meshinject.io/rev=missing`},
	} {
		if _, err := m.Set(ctx, c.tag, SetOptions{Revision: c.rev}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("set %s --revision %q: %v, want an error with %q", c.tag, c.rev, err, c.want)
		}
	}
}

func TestRemoveRefusesATagInUse(t *testing.T) {
	ctx := context.Background()
	m := &Manager{Client: fake.NewClientset(revision(t, "a"), ns("shop", "istio.io/rev", "prod"), ns("web", "istio-injection", "enabled"))}
	if _, err := m.Set(ctx, "prod", SetOptions{Revision: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "prod", false); err == nil || !strings.Contains(err.Error(), "still serves namespaces shop") {
		t.Fatalf("removing a tag in use: %v", err)
	}
	if err := m.Remove(ctx, "prod", true); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "prod", true); err == nil || !strings.Contains(err.Error(), "no MutatingWebhookConfiguration meshinject-revision-tag-prod") {
		t.Errorf("removing it again: %v", err)
	}
}

// injected is pod injected by revision rev with proxy image tag tag.
func injected(t *testing.T, pod *corev1.Pod, rev, tag string) *corev1.Pod {
	t.Helper()
	cm := configMap(t, rev, tag)
	r := rev
	if r == "default" {
		r = ""
	}
	cfg, err := config.Load(config.Sources{InjectionConfig: []byte(cm.Data["config"]), Values: []byte(cm.Data["values"]), Mesh: []byte(cm.Data["mesh"]), Revision: r})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := inject.New(inject.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Inject(inject.Request{Pod: pod.DeepCopy(), NativeSidecars: true})
	if err != nil || res.Skipped {
		t.Fatalf("inject %s: %v %s", pod.Name, err, res.Reason)
	}
	return res.Pod
}

func appPod(name, namespace string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
}

// TestListReportsStalePods: the tag default points to b, whose
// configuration now injects proxy 1.32.0. Of the pods in its namespaces,
// those injected by a, or by b with 1.31.4, or not injected, need a
// restart; b's 1.32.0 pod and a hostNetwork pod do not.
func TestListReportsStalePods(t *testing.T) {
	ctx := context.Background()
	hostNet := appPod("host", "shop")
	hostNet.Spec.HostNetwork = true
	objs := []runtime.Object{revision(t, "a"), revision(t, "b"), configMap(t, "b", "1.32.0"),
		ns("shop", "istio-injection", "enabled"), ns("web", "istio.io/rev", "default"), ns("other", "istio.io/rev", "prod"),
		injected(t, appPod("by-a", "shop"), "a", "1.31.4"),
		injected(t, appPod("old-image", "web"), "b", "1.31.4"),
		injected(t, appPod("current", "web"), "b", "1.32.0"),
		appPod("plain", "shop"), hostNet,
		injected(t, appPod("elsewhere", "other"), "a", "1.31.4"),
	}
	m := &Manager{Client: fake.NewClientset(objs...)}
	for _, c := range []struct{ tag, rev string }{{"default", "a"}, {"default", "b"}, {"prod", "a"}} {
		if _, err := m.Set(ctx, c.tag, SetOptions{Revision: c.rev, Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Tag{{Tag: "default", Revision: "b", Namespaces: []string{"shop", "web"}, Pods: 5, Stale: []StalePod{
		{Namespace: "shop", Name: "by-a", Reason: "injected by revision a"},
		{Namespace: "shop", Name: "plain", Reason: "not injected"},
		{Namespace: "web", Name: "old-image", Reason: "istio-proxy runs docker.io/istio/proxyv2:1.31.4; revision b now injects docker.io/istio/proxyv2:1.32.0"},
	}}, {Tag: "prod", Revision: "a", Namespaces: []string{"other"}, Pods: 1, Stale: []StalePod{},
		Note: `proxy images not compared: revision a's configuration, ConfigMap meshinject/meshinject-a-config: configmaps "meshinject-a-config" not found`}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}
