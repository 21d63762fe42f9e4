//go:build node

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeChartCertManager installs the chart with its default TLS mode,
// cert-manager (its controller and cainjector running as processes in the
// node's namespaces, built from the pinned module), as revision cm pinned
// by image.digest with imagePullPolicy Never: the replicas start from the
// image the suite imported and serve with cert-manager's certificate, and
// a pod of a namespace selecting revision cm is injected by them.
func TestNodeChartCertManager(t *testing.T) {
	needsNode(t)
	cm := os.Getenv("E2E_CERT_MANAGER")
	if cm == "" {
		t.Fatal("E2E_CERT_MANAGER is not set (run make test-node)")
	}
	mustKubectl(t, "apply", "--server-side", "-f", filepath.Join(cm, "crds"))
	n := nodeTier.node
	for name, args := range map[string][]string{"controller": nil, "cainjector": nil} {
		if err := n.start("cert-manager-"+name, filepath.Join(cm, "cert-manager-"+name), append(args, "--kubeconfig="+suite.kubeconfig)...); err != nil {
			t.Fatal(err)
		}
		p := n.procs[len(n.procs)-1]
		t.Cleanup(p.stop)
	}
	digest := imageDigest(t)
	start := time.Now()
	helm(t, "install", "meshinject-cm", filepath.Join(suite.repo, "deploy/charts/meshinject"), "-n", "meshinject", "--create-namespace",
		"--set", "revision=cm", "--set", "image.digest="+digest, "--set", "image.pullPolicy=Never")
	t.Cleanup(func() { helm(t, "uninstall", "meshinject-cm", "-n", "meshinject", "--wait", "--timeout=2m") })
	rollout(t, "meshinject", "meshinject-cm")
	t.Logf("chart (cert-manager TLS) installed and both replicas Ready in %s", time.Since(start).Round(100*time.Millisecond))
	assertInjectorPods(t, "meshinject", "app=meshinject-cm", "ghcr.io/meshinject/meshinject@"+digest)
	eventually(t, wait, "cert-manager's CA in the caBundle", func() error { return caBundlesSet("meshinject-sidecar-injector-cm") })

	ns := namespace(t, "cm", map[string]string{"istio.io/rev": "cm"})
	pod := create(t, ns, pendingPod("web"))
	assertSidecar(t, pod, true, "cm")
}
