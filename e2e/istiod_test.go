//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshinject/meshinject/test/testutil"
)

// startIstiod runs Istio's control plane (pilot-discovery) against the
// suite's API server as the default revision, with Istio's CRDs, the mesh
// config and sidecar-injector ConfigMap of Istio's chart in istio-system:
// its sidecar injector is on, so its webhook caBundle patcher runs. It
// returns once istiod is ready, and is stopped when the test ends.
func startIstiod(t *testing.T) *istiodProc {
	t.Helper()
	crds := filepath.Join(suite.istioModule, "manifests/charts/base/files/crd-all.gen.yaml")
	if out, err := kubectl("apply", "--server-side", "-f", crds); err != nil {
		t.Fatalf("apply Istio's CRDs: %v\n%s", err, out)
	}
	namespaceNamed(t, "istio-system", nil)
	if out, err := kubectl("apply", "-n", "istio-system", "-f", filepath.Join(suite.istioChart, "istio-sidecar-injector.yaml")); err != nil {
		t.Fatalf("apply Istio's sidecar-injector ConfigMap: %v\n%s", err, out)
	}
	mesh, err := os.ReadFile(filepath.Join(suite.istioChart, "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Data: map[string]string{"mesh": string(mesh)}}
	if _, err := suite.client.CoreV1().ConfigMaps("istio-system").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh"), mesh, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)) }
	httpAddr, secureGRPC := addr(), addr()
	p, err := startProcessEnv("istiod", dir, append(os.Environ(),
		"POD_NAMESPACE=istio-system", "POD_NAME=istiod-e2e", "REVISION=default",
		"INJECTION_WEBHOOK_CONFIG_NAME=istio-sidecar-injector", "PILOT_CERT_PROVIDER=istiod",
	), filepath.Join(suite.istio, "pilot-discovery"), "discovery",
		"--kubeconfig="+suite.kubeconfig, "--meshConfig="+filepath.Join(dir, "mesh"),
		"--httpAddr="+httpAddr, "--grpcAddr="+addr(), "--secureGRPCAddr="+secureGRPC, "--httpsAddr="+addr(),
		"--monitoringAddr="+addr(), "--ctrlz_address=127.0.0.1", "--ctrlz_port="+strconv.Itoa(testutil.FreePort(t)),
		"--log_output_level=default:info")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	eventually(t, 2*wait, "istiod ready", func() error {
		if p.exited() {
			t.Fatalf("istiod exited:\n%s", p.tail())
		}
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + httpAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %d", resp.StatusCode)
		}
		return nil
	})
	return &istiodProc{process: p, secureGRPC: secureGRPC}
}

// TestBesideIstiod: with istiod (default revision, its injector and
// caBundle patcher on) running beside meshinject, meshinject's webhook
// configuration keeps meshinject's caBundle over several of istiod's
// reconciles while pods keep being injected, with TLS from a certificate
// directory and self-managed. A configuration laid out as meshinject's
// used to be (istio.io/rev=default, entries named
// *.sidecar-injector.istio.io) gets istiod's CA written over its caBundle
// each round, which shows that istiod's patcher ran after each change.
func TestBesideIstiod(t *testing.T) {
	needsIstio(t)
	needsLocal(t)
	istiod := startIstiod(t)
	decoy := decoyConfiguration()
	mwcs := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := mwcs.Create(t.Context(), decoy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mwcs.Delete(context.Background(), decoy.Name, metav1.DeleteOptions{}) })
	ns := namespace(t, "beside", map[string]string{"istio-injection": "enabled"})
	t.Run("cert-dir", func(t *testing.T) { besideRounds(t, istiod, decoy.Name, ns, suite.ca.CertPEM) })
	t.Run("self-managed", func(t *testing.T) { besideRounds(t, istiod, decoy.Name, ns, startSelfManaged(t)) })
}

// besideRounds runs the rounds of TestBesideIstiod while meshinject's
// configuration holds ours, the CA meshinject serves with.
func besideRounds(t *testing.T, istiod *istiodProc, decoy, ns string, ours []byte) {
	mwcs := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	for round := range 3 {
		// An update to each configuration is an event istiod reconciles.
		for _, name := range []string{mwcDefault, decoy} {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"e2e.meshinject.io/round":"%d"}}}`, round)
			if _, err := mwcs.Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// The decoy gets the suite's CA back: istiod must write its own again.
		if err := setCABundle(t.Context(), decoy, suite.ca.CertPEM); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, fmt.Sprintf("round %d: istiod writes its CA into the decoy configuration", round), func() error {
			if istiod.exited() {
				t.Fatalf("istiod exited:\n%s", istiod.tail())
			}
			return caBundleOtherThan(t, decoy, suite.ca.CertPEM)
		})
		if err := caBundleOtherThan(t, mwcDefault, ours); err == nil {
			t.Fatalf("round %d: the caBundle of %s is no longer meshinject's", round, mwcDefault)
		}
		pod := create(t, ns, appPod(fmt.Sprintf("web-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), round)))
		assertSidecar(t, pod, true, "default")
	}
}

// decoyConfiguration is a webhook configuration laid out as Istio's own
// (and meshinject's, before): labelled istio.io/rev=default, entries named
// *.sidecar-injector.istio.io. It matches no namespace, so no pod is sent
// to it; its caBundle is the suite's CA.
func decoyConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	none, fail := admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.Fail
	path := "/inject"
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-decoy-sidecar-injector", Labels: map[string]string{"istio.io/rev": "default"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "namespace.sidecar-injector.istio.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service:  &admissionregistrationv1.ServiceReference{Namespace: "meshinject", Name: "meshinject", Path: &path},
				CABundle: suite.ca.CertPEM,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.meshinject.io/never": "true"}},
			SideEffects:       &none, FailurePolicy: &fail,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// caBundleOtherThan is nil when a webhook of the configuration name has a
// caBundle other than ca.
func caBundleOtherThan(t *testing.T, name string, ca []byte) error {
	t.Helper()
	mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, wh := range mwc.Webhooks {
		if !bytes.Equal(wh.ClientConfig.CABundle, ca) {
			return nil
		}
	}
	return errors.New("every caBundle is still the one expected")
}
