//go:build node

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeChartCertManager runs the README's first install command (With
// Helm: the chart's default TLS mode, cert-manager installed first; its
// controller and cainjector run as processes in the node's namespaces,
// built from the pinned module): two replicas Ready from the image the
// suite imported, serving cert-manager's certificate. An upgrade then pins
// the image by image.digest with imagePullPolicy Never, and a pod of an
// istio-injection=enabled namespace is injected by the new replicas.
func TestNodeChartCertManager(t *testing.T) {
	needsNode(t)
	cm := os.Getenv("E2E_CERT_MANAGER")
	if cm == "" {
		t.Fatal("E2E_CERT_MANAGER is not set (run make test-node)")
	}
	mustKubectl(t, "apply", "--server-side", "-f", filepath.Join(cm, "crds"))
	n := nodeTier.node
	for _, name := range []string{"controller", "cainjector"} {
		if err := n.start("cert-manager-"+name, filepath.Join(cm, "cert-manager-"+name), "--kubeconfig="+suite.kubeconfig); err != nil {
			t.Fatal(err)
		}
		p := n.procs[len(n.procs)-1]
		t.Cleanup(p.stop)
	}
	chart := filepath.Join(suite.repo, "deploy/charts/meshinject")
	start := time.Now()
	helm(t, "install", "meshinject", chart, "-n", "meshinject", "--create-namespace")
	t.Cleanup(func() { uninstall(t, "meshinject", "meshinject") })
	rollout(t, "meshinject", "meshinject")
	t.Logf("chart (cert-manager TLS) installed and both replicas Ready in %s", time.Since(start).Round(100*time.Millisecond))
	assertInjectorPods(t, "meshinject", "app=meshinject", meshinjectImage)
	eventually(t, wait, "cert-manager's CA in the caBundle", func() error { return caBundlesSet("meshinject-sidecar-injector") })

	digest := imageDigest(t)
	helm(t, "upgrade", "meshinject", chart, "-n", "meshinject", "--reuse-values", "--set", "image.digest="+digest, "--set", "image.pullPolicy=Never")
	rollout(t, "meshinject", "meshinject")
	eventually(t, wait, "only the pinned image's pods", func() error {
		return rolledOut("meshinject", "meshinject")(t.Context())
	})
	assertInjectorPods(t, "meshinject", "app=meshinject", "ghcr.io/meshinject/meshinject@"+digest)
	ns := namespace(t, "cm", map[string]string{"istio-injection": "enabled"})
	pod := create(t, ns, pendingPod("web"))
	assertSidecar(t, pod, true, "default")
}
