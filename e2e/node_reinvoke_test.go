//go:build node

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshinject/meshinject/certs"
)

// stripLabel selects the namespaces the restartPolicy-stripping webhook
// serves.
const stripLabel = "e2e.meshinject.io/strip-restart-policy"

// startStripWebhook serves, from the test inside the node's network
// namespace, a mutating webhook that removes restartPolicy from every init
// container, as webhooks written before native sidecars did; its
// configuration is named to run after meshinject's (reinvocationPolicy
// Never) and serves namespaces labelled stripLabel. Both go when the test
// ends.
func startStripWebhook(t *testing.T) {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{CommonName: "e2e-strip-ca"})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := certs.NewServing(ca, certs.Options{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := nodeTier.node.ns.listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: stripRestartPolicy, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	url := "https://" + l.Addr().String() + "/strip"
	none, fail, never := admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.Fail, admissionregistrationv1.NeverReinvocationPolicy
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-e2e-strip-restart-policy"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "strip.e2e.meshinject.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca.CertPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{stripLabel: "true"}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	mwcs := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := mwcs.Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mwcs.Delete(context.Background(), mwc.Name, metav1.DeleteOptions{}) })
}

// stripRestartPolicy is a webhook (controller-runtime's) whose patch
// removes each init container's restartPolicy.
var stripRestartPolicy = &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("pod: %w", err))
	}
	var ops []jsonpatch.Operation
	for i, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil {
			ops = append(ops, jsonpatch.NewOperation("remove", fmt.Sprintf("/spec/initContainers/%d/restartPolicy", i), nil))
		}
	}
	return admission.Patched("restartPolicy stripped", ops...)
})}

// testMeshReinvocation: another mutating webhook, ordered after
// meshinject's, strips restartPolicy from init containers. With
// reinvocationPolicy Never, the chart's default, istio-proxy is left a
// plain init container with probes and a preStop hook, which the API server
// refuses, naming them (without them it would be an init container that
// never ends: the pod stuck in Init). With IfNeeded the API server calls
// meshinject again, which injects anew: istio-proxy is a native sidecar
// again, and the pod runs.
func testMeshReinvocation(t *testing.T) {
	startStripWebhook(t)
	ns := namespace(t, "mesh-reinvoke", map[string]string{"istio-injection": "enabled", stripLabel: "true"})

	t.Run("never", func(t *testing.T) {
		assertReinvocation(t, "Never") // the chart's default
		err := createErr(t, ns, appNetcheck("never"))
		const want = "may not be set for init containers without restartPolicy=Always"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("with Never, the create failed with %q, want the API server's %q", err, want)
		}
		t.Logf("with reinvocationPolicy Never the API server refuses the pod: %v", err)
	})

	t.Run("if-needed", func(t *testing.T) {
		chart := filepath.Join(suite.repo, "deploy/charts/meshinject")
		helm(t, "upgrade", "meshinject", chart, "-n", "meshinject", "--reuse-values", "--set", "sidecarInjectorWebhook.reinvocationPolicy=IfNeeded")
		t.Cleanup(func() {
			helm(t, "upgrade", "meshinject", chart, "-n", "meshinject", "--reuse-values", "--set", "sidecarInjectorWebhook.reinvocationPolicy=Never")
		})
		assertReinvocation(t, "IfNeeded")
		pod := create(t, ns, appNetcheck("ifneeded"))
		assertSidecarImage(t, pod, true, "default", meshProxyImage)
		eventually(t, 2*wait, "pod ifneeded Ready", func() error { return podReady(t.Context(), ns, "ifneeded") })
	})
}

// appNetcheck is a one-container netcheck pod serving 8080.
func appNetcheck(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", "8080"},
		}}},
	}
}

// assertReinvocation checks every entry of meshinject's configuration
// has the reinvocation policy.
func assertReinvocation(t *testing.T, want string) {
	t.Helper()
	mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "meshinject-sidecar-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, wh := range mwc.Webhooks {
		if wh.ReinvocationPolicy == nil || string(*wh.ReinvocationPolicy) != want {
			t.Fatalf("webhook %s: reinvocationPolicy %v, want %s", wh.Name, ptr.Deref(wh.ReinvocationPolicy, ""), want)
		}
	}
}
