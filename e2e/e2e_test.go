//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// 1. A namespace labelled istio-injection=enabled.
func TestEnabledNamespace(t *testing.T) {
	ns := namespace(t, "enabled", map[string]string{"istio-injection": "enabled"})
	assertSidecar(t, create(t, ns, appPod("web")), true, "default")
	assertUntouched(t, create(t, ns, appPod("opted-out", withLabels("sidecar.istio.io/inject", "false"))))
}

// 2. An unlabelled namespace: only pods that opt in.
func TestUnlabelledNamespace(t *testing.T) {
	ns := namespace(t, "plain", nil)
	assertUntouched(t, create(t, ns, appPod("web")))
	assertSidecar(t, create(t, ns, appPod("opted-in", withLabels("sidecar.istio.io/inject", "true"))), true, "default")
}

// 3. The `image: auto` guard, and a gateway pod injected with the real
// image.
func TestImageAutoGuardAndGateway(t *testing.T) {
	disabled := namespace(t, "disabled", map[string]string{"istio-injection": "disabled"})
	// The API server loads admission policies asynchronously: right after
	// install the guard may not be active yet.
	eventually(t, wait, "the image: auto guard", func() error {
		_, err := suite.client.CoreV1().Pods(disabled).Create(t.Context(), gatewayPod("gw"), metav1.CreateOptions{})
		if err == nil {
			_ = suite.client.CoreV1().Pods(disabled).Delete(t.Context(), "gw", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			return fmt.Errorf("the un-injected gateway pod was admitted")
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "image 'auto' is filled in by sidecar injection, which did not run for this pod") ||
			!strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'meshinject-image-auto'") {
			t.Fatalf("gateway pod in an injection-disabled namespace: got %v, want the guard's rejection", err)
		}
		return nil
	})

	ingress := namespaceNamed(t, "istio-ingress", nil)
	gw := create(t, ingress, gatewayPod("gw"))
	if len(gw.Spec.Containers) != 1 || gw.Spec.Containers[0].Image != proxyImage {
		t.Errorf("gateway containers %v image %q, want istio-proxy with %q", names(gw.Spec.Containers), gw.Spec.Containers[0].Image, proxyImage)
	}
	if len(gw.Spec.InitContainers) != 0 {
		t.Errorf("gateway init containers %v, want none", names(gw.Spec.InitContainers))
	}
}

// 4. Workloads through kube-controller-manager.
func TestWorkloadsThroughControllers(t *testing.T) {
	needsLocal(t) // creates and deletes istio-ingress and waits on kube-controller-manager of our own
	ctx := t.Context()
	ns := namespace(t, "bookinfo", map[string]string{"istio-injection": "enabled"})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "app"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := suite.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy := func(ns, name string, labels, annotations map[string]string, c corev1.Container) {
		t.Helper()
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"workload": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
				},
			},
		}
		d.Spec.Template.Labels["workload"] = name
		if _, err := suite.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	app := corev1.Container{Name: "app", Image: "registry.example/app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}
	deploy(ns, "app-v1", map[string]string{"app": "app", "version": "v1"}, nil, app)
	deploy(ns, "app-v2", map[string]string{"app": "app", "version": "v2"}, nil, app)
	deploy(ns, "testclient", map[string]string{"app": "testclient"}, nil, corev1.Container{Name: "client", Image: "registry.example/curl:1", Command: []string{"sleep", "infinity"}})
	for _, w := range []string{"app-v1", "app-v2", "testclient"} {
		for _, p := range podsOf(t, ns, "workload="+w, 1) {
			assertSidecar(t, &p, true, "default")
		}
	}

	ingress := namespaceNamed(t, "istio-ingress", nil)
	deploy(ingress, "istio-ingressgateway",
		map[string]string{"istio": "ingressgateway", "sidecar.istio.io/inject": "true"},
		map[string]string{"inject.istio.io/templates": "gateway"},
		corev1.Container{Name: "istio-proxy", Image: "auto"})
	for _, p := range podsOf(t, ingress, "workload=istio-ingressgateway", 1) {
		if p.Spec.Containers[0].Image != proxyImage || len(p.Spec.InitContainers) != 0 {
			t.Errorf("ingress gateway pod: image %q, init containers %v; want %q and none", p.Spec.Containers[0].Image, names(p.Spec.InitContainers), proxyImage)
		}
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"workload": "migrate"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:1"}}},
		}},
	}
	if _, err := suite.client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range podsOf(t, ns, "workload=migrate", 1) {
		assertSidecar(t, &p, true, "default")
	}
}

// 5. Revisions: a canary injector beside the default one.
func TestCanaryRevision(t *testing.T) {
	needsLocal(t)
	canary, err := startServer("canary", canaryPort, []string{"--revision=canary"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(canary.stop)

	// Each pod goes to exactly one injector: the other one's request count
	// does not move.
	calls := func(s *server) float64 { return metric(t, s, "sidecar_injection_requests_total") }
	ns := namespace(t, "canary", map[string]string{"istio.io/rev": "canary"})
	both := namespace(t, "both", map[string]string{"istio.io/rev": "canary", "istio-injection": "enabled"})
	plain := namespace(t, "object-rev", nil)
	for _, c := range []struct {
		ns   string
		pod  *corev1.Pod
		want string
	}{
		{ns, appPod("web"), "canary"},
		{both, appPod("web"), "default"},
		{plain, appPod("web", withLabels("istio.io/rev", "canary")), "canary"},
	} {
		def, can := calls(suite.def), calls(canary)
		assertSidecar(t, create(t, c.ns, c.pod), true, c.want)
		dDef, dCan := calls(suite.def)-def, calls(canary)-can
		if want := map[string][2]float64{"default": {1, 0}, "canary": {0, 1}}[c.want]; dDef != want[0] || dCan != want[1] {
			t.Errorf("namespace %s: the default injector was called %v times and the canary %v, want %v and %v", c.ns, dDef, dCan, want[0], want[1])
		}
	}
}

// 6. Errors and warnings reach the client.
func TestErrorsAndWarnings(t *testing.T) {
	ns := namespace(t, "errors", map[string]string{"istio-injection": "enabled"})
	err := createErr(t, ns, appPod("bad", withAnnotations("traffic.sidecar.istio.io/includeInboundPorts", "http")))
	if !strings.Contains(err.Error(), "traffic.sidecar.istio.io/includeInboundPorts") || !strings.Contains(err.Error(), `"http"`) {
		t.Errorf("invalid annotation: got %v, want a denial naming the annotation and its value", err)
	}

	client, w := warningClient(t)
	optOut := appPod("opt-out", withAnnotations("sidecar.istio.io/inject", "false"))
	got, err := client.CoreV1().Pods(ns).Create(t.Context(), optOut, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, got)
	if ws := w.all(); !containsSub(ws, "meshinject: not injected: annotation sidecar.istio.io/inject=false") {
		t.Errorf("opted-out pod: warnings %q, want the skip reason", ws)
	}

	// A hostNetwork pod is never sent: the entries' matchConditions.
	client, w = warningClient(t)
	host := appPod("host")
	host.Spec.HostNetwork = true
	if got, err = client.CoreV1().Pods(ns).Create(t.Context(), host, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, got)
	// Sent, it would carry the skip warning "not injected: pod has hostNetwork".
	if ws := w.all(); containsSub(ws, "meshinject:") {
		t.Errorf("hostNetwork pod reached the webhook (warnings %q): the match condition did not keep it away", ws)
	}

	manifest := filepath.Join(t.TempDir(), "pod.json")
	b, _ := json.Marshal(appPod("dry"))
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(b), `{`, `{"apiVersion":"v1","kind":"Pod",`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := kubectl("create", "--dry-run=server", "-n", ns, "-f", manifest, "-o", "jsonpath={.spec.initContainers[*].name}")
	if err != nil || !strings.Contains(out, "istio-proxy") {
		t.Errorf("kubectl create --dry-run=server: %v: %s; want the injected init containers", err, out)
	}
	if _, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run pod stored: %v", err)
	}
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// 7. failurePolicy Fail while the webhook is down, and recovery.
func TestWebhookDown(t *testing.T) {
	needsLocal(t)
	enabled := namespace(t, "down", map[string]string{"istio-injection": "enabled"})
	plain := namespace(t, "down-plain", nil)
	suite.def.stop()
	t.Cleanup(func() {
		if suite.def.exited() {
			if err := suite.def.restart(); err != nil {
				t.Error(err)
			}
		}
	})

	if err := createErr(t, enabled, appPod("web")); !isWebhookCallError(err) {
		t.Errorf("webhook down: got %v, want the API server's webhook call failure", err)
	}
	assertUntouched(t, create(t, plain, appPod("web")))
	own := appPod("own-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	own.Labels["sidecar.istio.io/inject"] = "true"
	// The meshinject namespace enforces the restricted Pod Security level.
	own.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	own.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	got := create(t, "meshinject", own)
	assertUntouched(t, got)
	_ = suite.client.CoreV1().Pods("meshinject").Delete(t.Context(), own.Name, metav1.DeleteOptions{})

	if err := suite.def.restart(); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	eventually(t, wait, "injection after restart", func() error {
		var err error
		pod, err = suite.client.CoreV1().Pods(enabled).Create(t.Context(), appPod("web"), metav1.CreateOptions{})
		return err
	})
	assertSidecar(t, pod, true, "default")
}

// 10. Configuration reload from the served directory.
func TestConfigReload(t *testing.T) {
	needsLocal(t)
	ns := namespace(t, "reload", map[string]string{"istio-injection": "enabled"})
	values := filepath.Join(suite.def.configDir, "values")
	orig, err := os.ReadFile(values)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := writeAtomic(values, orig); err != nil {
			t.Error(err)
		}
		eventually(t, wait, "original config back", func() error {
			return imageIs(context.Background(), ns, proxyImage)
		})
	})
	newer := bytes.Replace(orig, []byte("tag: 1.31.4"), []byte("tag: 1.31.5"), 1)
	if bytes.Equal(newer, orig) {
		t.Fatal("deploy/base/injector/values has no `tag: 1.31.4` to change")
	}
	if err := writeAtomic(values, newer); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "new proxy tag", func() error { return imageIs(t.Context(), ns, "docker.io/istio/proxyv2:1.31.5") })

	failures := reloadFailures(t)
	if err := writeAtomic(values, []byte("global: [\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "invalid config refused", func() error {
		if n := reloadFailures(t); n <= failures {
			return fmt.Errorf("meshinject_config_reloads_total{result=\"failure\"} still %v", n)
		}
		return nil
	})
	if err := imageIs(t.Context(), ns, "docker.io/istio/proxyv2:1.31.5"); err != nil {
		t.Errorf("after an invalid change: %v", err)
	}
}

// imageIs creates a pod in ns and checks its proxy image.
func imageIs(ctx context.Context, ns, image string) error {
	pod, err := suite.client.CoreV1().Pods(ns).Create(ctx, appPod("", func(p *corev1.Pod) { p.GenerateName = "web-" }), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	proxy := find(pod.Spec.InitContainers, "istio-proxy")
	if proxy == nil {
		return fmt.Errorf("pod %s not injected", pod.Name)
	}
	if proxy.Image != image {
		return fmt.Errorf("proxy image %q, want %q", proxy.Image, image)
	}
	return nil
}

func reloadFailures(t *testing.T) float64 {
	t.Helper()
	return metric(t, suite.def, `meshinject_config_reloads_total{result="failure"}`)
}

// metric reads one sample of s's /metrics (0 when absent).
func metric(t *testing.T, s *server, series string) float64 {
	t.Helper()
	_, body := s.get("/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// 9. Self-managed TLS with the RBAC of deploy/overlays/self-managed.
func TestSelfManagedTLS(t *testing.T) {
	needsLocal(t)
	ctx := t.Context()
	ca := startSelfManaged(t)
	mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcDefault, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Errorf("webhook %s: caBundle is not the self-managed CA", w.Name)
		}
	}
	ns := namespace(t, "self-managed", map[string]string{"istio-injection": "enabled"})
	assertSidecar(t, create(t, ns, appPod("web")), true, "default")

	tampered := base64JSON([]byte("-----BEGIN CERTIFICATE-----\nnot a CA\n-----END CERTIFICATE-----\n"))
	if _, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, mwcDefault, types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":`+tampered+`}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "caBundle restored", func() error {
		mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcDefault, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, ca) {
			return fmt.Errorf("caBundle of %s still tampered", mwc.Webhooks[0].Name)
		}
		return nil
	})
	assertSidecar(t, create(t, ns, appPod("after-tamper")), true, "default")
}

// startSelfManaged replaces the default server with one in self-managed
// TLS mode, with the RBAC of deploy/overlays/self-managed, and returns the
// CA it keeps; the default server is back when the test ends.
func startSelfManaged(t *testing.T) []byte {
	t.Helper()
	if out, err := kubectl("apply", "-f", filepath.Join(suite.repo, "deploy/overlays/self-managed/rbac.yaml")); err != nil {
		t.Fatalf("apply self-managed RBAC: %v\n%s", err, out)
	}
	sa, err := writeKubeconfig("meshinject-sa", suite.cfg, "system:serviceaccount:meshinject:meshinject")
	if err != nil {
		t.Fatal(err)
	}
	suite.def.stop()
	sm := &server{port: defaultPort, healthPort: defaultPort - 1000, configDir: suite.def.configDir}
	t.Cleanup(func() {
		sm.stop() // also when it never got ready: the port goes back to the default server
		// Back to the suite's certificate for the scenarios that follow.
		if err := setCABundle(context.Background(), mwcDefault, suite.ca.CertPEM); err != nil {
			t.Error(err)
		}
		if err := suite.def.restart(); err != nil {
			t.Error(err)
		}
	})
	args := []string{"serve", "--host=127.0.0.1", "--port=" + strconv.Itoa(defaultPort),
		"--health-addr=127.0.0.1:" + strconv.Itoa(sm.healthPort), "--metrics-addr=127.0.0.1:" + strconv.Itoa(sm.port-2000), "--config-dir=" + sm.configDir,
		"--kubeconfig=" + sa, "--tls-mode=self-managed", "--namespace=meshinject",
		"--tls-extra-names=127.0.0.1", "--tls-check-interval=1s", "--log-level=debug"}
	if err := sm.start("self-managed", args); err != nil {
		t.Fatal(err)
	}
	sec, err := suite.client.CoreV1().Secrets("meshinject").Get(t.Context(), "meshinject-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("self-managed Secret: %v", err)
	}
	return sec.Data["ca.crt"]
}

func base64JSON(b []byte) string {
	v, _ := json.Marshal(b) // []byte encodes as a base64 string
	return string(v)
}

// TestAuditAnnotations: the API server's audit log records, for each pod
// creation the webhook answered, the decision, revision, configuration
// hash and templates under the webhook entry's name.
func TestAuditAnnotations(t *testing.T) {
	needsLocal(t)
	ns := namespace(t, "audit", map[string]string{"istio-injection": "enabled"})
	create(t, ns, appPod("injected"))
	create(t, ns, appPod("skipped", withAnnotations("sidecar.istio.io/inject", "false")))
	_ = createErr(t, ns, appPod("denied", withAnnotations("sidecar.istio.io/proxyCPU", "fast")))
	want := map[string]map[string]string{
		"injected": {"decision": "injected", "templates": "sidecar", "revision": "default"},
		"skipped":  {"decision": "skipped:explicitly_disabled", "revision": "default"},
		"denied":   {"decision": "denied", "revision": "default"},
	}
	for pod, w := range want {
		var got map[string]string
		eventually(t, wait, "audit event of pod "+pod, func() error {
			var err error
			got, err = auditAnnotations(ns, pod)
			return err
		})
		for k, v := range w {
			if key := "namespace.meshinject.istio.io/" + k; got[key] != v {
				t.Errorf("pod %s: audit annotation %s = %q, want %q (all: %v)", pod, key, got[key], v, got)
			}
		}
		if h := got["namespace.meshinject.istio.io/config"]; len(h) != 12 {
			t.Errorf("pod %s: audit annotation config = %q, want the configuration's 12-digit hash", pod, h)
		}
	}
}

// auditAnnotations are the annotations of the audit event of the creation
// of pod ns/name.
func auditAnnotations(ns, name string) (map[string]string, error) {
	b, err := os.ReadFile(suite.auditLog)
	if err != nil {
		return nil, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var ev struct {
			Stage     string `json:"stage"`
			ObjectRef struct {
				Namespace, Name, Resource string
			} `json:"objectRef"`
			Annotations map[string]string `json:"annotations"`
		}
		if json.Unmarshal(line, &ev) != nil || ev.Stage != "ResponseComplete" {
			continue
		}
		if ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Namespace == ns && ev.ObjectRef.Name == name {
			return ev.Annotations, nil
		}
	}
	return nil, fmt.Errorf("no audit event for pod %s/%s yet", ns, name)
}
