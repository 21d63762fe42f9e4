//go:build e2e || node

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshinject/meshinject/test/testutil"
)

// namespace creates a namespace with a random suffix and labels, deleted
// when the test ends.
func namespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	return namespaceNamed(t, prefix+"-"+rand.String(5), labels)
}

func namespaceNamed(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := suite.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		// A namespace of a well-known name (istio-ingress) kept by an
		// earlier scenario, or still terminating.
		eventually(t, wait, "namespace "+name, func() error {
			_, err := suite.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
			return err
		})
	} else if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = suite.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	waitServiceAccount(t, name)
	return name
}

// waitServiceAccount waits for the ServiceAccount "default" of ns, which
// the ServiceAccount admission plugin requires before pods are created.
func waitServiceAccount(t *testing.T, ns string) {
	t.Helper()
	eventually(t, wait, "ServiceAccount default in "+ns, func() error {
		_, err := suite.client.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
		return err
	})
}

// podOpt changes a test pod.
type podOpt func(*corev1.Pod)

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) { p.Labels = setPairs(p.Labels, kv) }
}

func withAnnotations(kv ...string) podOpt {
	return func(p *corev1.Pod) { p.Annotations = setPairs(p.Annotations, kv) }
}

// setPairs sets the key, value pairs kv in m, making m when nil.
func setPairs(m map[string]string, kv []string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// appPod is a one-container application pod.
func appPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// gatewayPod is the `image: auto` gateway pattern.
func gatewayPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"istio": "ingressgateway", "sidecar.istio.io/inject": "true"},
			Annotations: map[string]string{"inject.istio.io/templates": "gateway"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "auto"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// warnings collects the API server's warnings for one client.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// warningClient is a client whose warnings are collected.
func warningClient(t *testing.T) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(suite.cfg)
	cfg.WarningHandler = w
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// create creates pod in ns and returns the pod the API server stored.
func create(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, pod.Name, err)
	}
	return got
}

// createErr creates pod in ns and returns the API server's error.
func createErr(t *testing.T, ns string, pod *corev1.Pod) error {
	t.Helper()
	_, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err == nil {
		t.Fatalf("create pod %s/%s: succeeded, want an error", ns, pod.Name)
	}
	return err
}

// eventually polls cond every 200ms until it returns nil, failing the test
// with cond's last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	testutil.Poll(t, timeout, 200*time.Millisecond, what, cond)
}

func names(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func find(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// assertSidecar asserts pod carries istio-init and an istio-proxy with the
// proxy image (a native sidecar when native is set) and the status
// annotation of revision rev.
func assertSidecar(t *testing.T, pod *corev1.Pod, native bool, rev string) {
	t.Helper()
	assertSidecarImage(t, pod, native, rev, proxyImage)
}

// assertSidecarImage is assertSidecar with istio-proxy's image.
func assertSidecarImage(t *testing.T, pod *corev1.Pod, native bool, rev, image string) {
	t.Helper()
	inits, ctrs := names(pod.Spec.InitContainers), names(pod.Spec.Containers)
	if len(inits) == 0 || inits[0] != "istio-init" {
		t.Errorf("pod %s: init containers %v, want istio-init first", pod.Name, inits)
	}
	proxy := find(pod.Spec.Containers, "istio-proxy")
	if native {
		proxy = find(pod.Spec.InitContainers, "istio-proxy")
		if proxy == nil || proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("pod %s: init containers %v: want istio-proxy as a native sidecar (restartPolicy Always)", pod.Name, inits)
		}
	}
	if proxy == nil {
		t.Fatalf("pod %s: no istio-proxy (containers %v, init containers %v)", pod.Name, ctrs, inits)
	}
	if proxy.Image != image {
		t.Errorf("pod %s: istio-proxy image %q, want %q", pod.Name, proxy.Image, image)
	}
	if got := statusRevision(t, pod); got != rev {
		t.Errorf("pod %s: injected by revision %q, want %q", pod.Name, got, rev)
	}
}

// assertUntouched asserts pod carries nothing of the injection.
func assertUntouched(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	all := append(names(pod.Spec.InitContainers), names(pod.Spec.Containers)...)
	if slices.Contains(all, "istio-init") || slices.Contains(all, "istio-proxy") {
		t.Errorf("pod %s: containers %v: want no injection", pod.Name, all)
	}
	if _, ok := pod.Annotations["sidecar.istio.io/status"]; ok {
		t.Errorf("pod %s: has the injection status annotation", pod.Name)
	}
}

// statusRevision is the revision recorded in the pod's
// sidecar.istio.io/status annotation ("" when absent).
func statusRevision(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	raw, ok := pod.Annotations["sidecar.istio.io/status"]
	if !ok {
		return ""
	}
	var st struct {
		Revision string `json:"revision"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("pod %s: status annotation %q: %v", pod.Name, raw, err)
	}
	return st.Revision
}

// podsOf waits until the pods matching selector in ns number at least n
// and returns them.
func podsOf(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, wait, fmt.Sprintf("%d pods %s in %s", n, selector, ns), func() error {
		list, err := suite.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(list.Items) < n {
			return fmt.Errorf("%d pods", len(list.Items))
		}
		pods = list.Items
		return nil
	})
	return pods
}

// isWebhookCallError reports whether err is the API server's failure to
// call a webhook (failurePolicy Fail).
func isWebhookCallError(err error) bool {
	return apierrors.IsInternalError(err) && strings.Contains(err.Error(), "failed calling webhook")
}
