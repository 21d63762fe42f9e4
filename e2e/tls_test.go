//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
)

var certificates = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// certManagerObjects is the chain of deploy/overlays/cert-manager, with the
// serving certificate for 127.0.0.1 where the local webhook listens.
const certManagerObjects = `
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: e2e-selfsigned, namespace: meshinject}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: e2e-ca, namespace: meshinject}
spec:
  isCA: true
  commonName: e2e-ca
  secretName: e2e-ca
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: e2e-selfsigned, kind: Issuer}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: e2e-ca, namespace: meshinject}
spec: {ca: {secretName: e2e-ca}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: e2e-serving, namespace: meshinject}
spec:
  secretName: e2e-serving
  ipAddresses: [127.0.0.1]
  privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}
  issuerRef: {name: e2e-ca, kind: Issuer}
`

// 8. TLS from cert-manager: issued, injected into the webhook
// configuration, renewed and served without a restart.
func TestCertManagerTLS(t *testing.T) {
	needsLocal(t)
	ctx := t.Context()
	for name, args := range map[string][]string{"controller": nil, "cainjector": {"--zap-log-level=2"}} {
		p, err := startProcess("cert-manager-"+name, filepath.Join(suite.certManager, "cert-manager-"+name), append(args, "--kubeconfig="+suite.kubeconfig)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
	}
	manifest := filepath.Join(t.TempDir(), "certs.yaml")
	if err := os.WriteFile(manifest, []byte(certManagerObjects), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("apply", "-f", manifest); err != nil {
		t.Fatalf("apply cert-manager objects: %v\n%s", err, out)
	}
	secret := waitSecret(t, "e2e-serving", nil)

	// The injector's cert dir gets the Secret's files, as a mounted Secret
	// would; cainjector fills the caBundle from the Certificate.
	defer func() {
		// Back to the suite's own certificate and CA.
		ctx := context.Background()
		_, _ = kubectl("annotate", "mutatingwebhookconfiguration", mwcDefault, "cert-manager.io/inject-ca-from-")
		if err := setCABundle(ctx, mwcDefault, suite.ca.CertPEM); err != nil {
			t.Error(err)
		}
		serving, err := certs.NewServing(suite.ca, certs.Options{IPAddresses: localIPs})
		if err == nil {
			err = certs.WriteDir(suite.def.certDir, serving, suite.ca.CertPEM)
		}
		if err != nil {
			t.Error(err)
		}
	}()
	if err := writeSecret(suite.def.certDir, secret); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("annotate", "--overwrite", "mutatingwebhookconfiguration", mwcDefault, "cert-manager.io/inject-ca-from=meshinject/e2e-serving"); err != nil {
		t.Fatalf("annotate: %v\n%s", err, out)
	}
	eventually(t, wait, "caBundle from cainjector", func() error {
		mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcDefault, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range mwc.Webhooks {
			// cainjector merges the CA into an existing bundle.
			if !bytes.Contains(w.ClientConfig.CABundle, secret["ca.crt"]) {
				return fmt.Errorf("webhook %s: caBundle does not hold cert-manager's CA", w.Name)
			}
		}
		return nil
	})
	ns := namespace(t, "cert-manager", map[string]string{"istio-injection": "enabled"})
	eventually(t, wait, "injection with the cert-manager certificate", func() error { return imageIs(t.Context(), ns, proxyImage) })

	// Renew as `cmctl renew` does: the Issuing condition on the Certificate.
	dyn, err := dynamic.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := dyn.Resource(certificates).Namespace("meshinject").Get(ctx, "e2e-serving", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
	conds = append(conds, map[string]any{
		"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
		"message": "renewal requested by the e2e suite", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	})
	if err := unstructured.SetNestedSlice(cert.Object, conds, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(certificates).Namespace("meshinject").UpdateStatus(ctx, cert, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("request renewal: %v", err)
	}
	renewed := waitSecret(t, "e2e-serving", secret["tls.crt"])
	if err := writeSecret(suite.def.certDir, renewed); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "renewed certificate served", func() error {
		served, err := suite.def.servedCert()
		if err != nil {
			return err
		}
		want, err := certs.Parse(renewed["tls.crt"], renewed["tls.key"])
		if err != nil {
			return err
		}
		if !bytes.Equal(served, want.Cert.Raw) {
			return fmt.Errorf("the webhook still serves the old certificate")
		}
		return nil
	})
	if suite.def.exited() {
		t.Fatalf("meshinject restarted or exited:\n%s", suite.def.tail())
	}
	if err := imageIs(t.Context(), ns, proxyImage); err != nil {
		t.Errorf("after renewal: %v", err)
	}
}

// waitSecret waits for the Secret name in meshinject holding a certificate
// other than old, and returns its data.
func waitSecret(t *testing.T, name string, old []byte) map[string][]byte {
	t.Helper()
	var data map[string][]byte
	eventually(t, wait, "Secret "+name, func() error {
		s, err := suite.client.CoreV1().Secrets("meshinject").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Data["tls.crt"]) == 0 || len(s.Data["tls.key"]) == 0 || bytes.Equal(s.Data["tls.crt"], old) {
			return fmt.Errorf("no new certificate yet")
		}
		data = s.Data
		return nil
	})
	return data
}

// writeSecret writes a kubernetes.io/tls Secret's data into dir.
func writeSecret(dir string, data map[string][]byte) error {
	b, err := certs.Parse(data["tls.crt"], data["tls.key"])
	if err != nil {
		return err
	}
	return certs.WriteDir(dir, b, data["ca.crt"])
}

// 11. Every overlay is accepted by the API server.
func TestManifestsDryRun(t *testing.T) {
	for _, dir := range []string{"base", "overlays/cert-manager", "overlays/self-managed", "overlays/canary", "overlays/kind", "overlays/e2e-local", "overlays/metrics-secure", "monitoring"} {
		t.Run(dir, func(t *testing.T) {
			if dir == "monitoring" && !suite.local {
				t.Skip("needs the Prometheus operator's CRDs, which the local control plane installs")
			}
			out, err := kubectl("apply", "--dry-run=server", "-k", filepath.Join(suite.repo, "deploy", dir))
			if err != nil {
				t.Errorf("kubectl apply --dry-run=server -k deploy/%s: %v\n%s", dir, err, out)
			}
			checkServicePorts(t, dir)
		})
	}
}

// checkServicePorts: the webhook Services of an overlay target a port
// number, not a port name: istioctl kube-inject (cluster mode)
// port-forwards to the targetPort as a number, so a name reaches port 0.
func checkServicePorts(t *testing.T, dir string) {
	t.Helper()
	out, err := kubectl("kustomize", filepath.Join(suite.repo, "deploy", dir))
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/%s: %v\n%s", dir, err, out)
	}
	docs, err := manifest.Split([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var svc corev1.Service
		if err := yaml.Unmarshal(d.Raw, &svc); err != nil || svc.Kind != "Service" {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.Int {
				t.Errorf("deploy/%s: Service %s port %s targets %q, a name; istioctl kube-inject needs a number", dir, svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
}
