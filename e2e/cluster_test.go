//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshinject/meshinject/certs"
)

// auditPolicy logs pod creations at Metadata level, which carries the
// admission webhooks' audit annotations; nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create]
  resources:
  - group: ""
    resources: [pods]
- level: None
`

// runE2E is the e2e suite's TestMain: a control plane of its own (or the
// current kubeconfig's cluster), the scenarios, teardown.
func runE2E(m *testing.M) int {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	return code
}

func run(m *testing.M) (int, error) {
	defer func() {
		for i := len(suite.procs) - 1; i >= 0; i-- {
			suite.procs[i].stop()
		}
		if suite.env != nil {
			_ = suite.env.Stop()
		}
	}()
	if err := setup(); err != nil {
		return 1, err
	}
	return m.Run(), nil
}

func setup() error {
	var err error
	if suite.repo, err = filepath.Abs(".."); err != nil {
		return err
	}
	if suite.work, err = os.MkdirTemp("", "meshinject-e2e-"); err != nil {
		return err
	}
	suite.local = os.Getenv("E2E_EXISTING_CLUSTER") != "true"
	if !suite.local {
		return setupExisting()
	}
	assets, cm, bin := os.Getenv("E2E_K8S_ASSETS"), os.Getenv("E2E_CERT_MANAGER"), os.Getenv("E2E_MESHINJECT")
	if assets == "" || cm == "" || bin == "" {
		return errors.New("E2E_K8S_ASSETS, E2E_CERT_MANAGER and E2E_MESHINJECT must be set (run `make test-e2e`)")
	}
	suite.kubectl, suite.certManager, suite.meshinject = filepath.Join(assets, "kubectl"), cm, bin
	suite.istio, suite.istioModule, suite.istioChart = os.Getenv("E2E_ISTIO"), os.Getenv("E2E_ISTIO_MODULE"), os.Getenv("E2E_ISTIO_CHART")
	if suite.istio == "" || suite.istioModule == "" || suite.istioChart == "" {
		return errors.New("E2E_ISTIO, E2E_ISTIO_MODULE and E2E_ISTIO_CHART must be set (run `make test-e2e`)")
	}

	start := time.Now()
	po := os.Getenv("E2E_PROMETHEUS_OPERATOR")
	if po == "" {
		return errors.New("E2E_PROMETHEUS_OPERATOR must be set (run `make test-e2e`)")
	}
	crds := []string{filepath.Join(cm, "crds")}
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		crds = append(crds, filepath.Join(po, "example/prometheus-operator-crd/monitoring.coreos.com_"+kind+".yaml"))
	}
	suite.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: wait,
		ControlPlaneStopTimeout:  wait,
	}
	// envtest turns the ServiceAccount admission plugin off because nothing
	// creates the "default" ServiceAccounts; our kube-controller-manager
	// does, and injected pods need serviceAccountName set (the istio-token
	// volume), as on every real cluster.
	suite.env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	// An audit log of pod creations, where the webhook's audit annotations
	// land (TestAuditAnnotations).
	policy := filepath.Join(suite.work, "audit-policy.yaml")
	suite.auditLog = filepath.Join(suite.work, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	suite.env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policy).Set("audit-log-path", suite.auditLog).Set("audit-log-format", "json")
	if _, err := suite.env.Start(); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	admin, err := suite.env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	suite.cfg = rest.CopyConfig(admin.Config())
	if suite.kubeconfig, err = writeKubeconfig("admin", suite.cfg, ""); err != nil {
		return err
	}
	if suite.client, err = kubernetes.NewForConfig(suite.cfg); err != nil {
		return err
	}

	certDir := suite.env.ControlPlane.APIServer.CertDir
	kcm, err := startProcess("kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+suite.kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--use-service-account-credentials=false",
		// Not throttled by its client: pod creation at scale (make
		// bench-e2e) measures admission, not client-go's rate limiter.
		"--kube-api-qps=1000", "--kube-api-burst=1000",
		"--service-account-private-key-file="+filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file="+filepath.Join(certDir, "apiserver.crt"),
		"--controllers=deployment-controller,replicaset-controller,job-controller,cronjob-controller,"+
			"daemonset-controller,statefulset-controller,serviceaccount-controller,"+
			"serviceaccount-token-controller,namespace-controller,garbage-collector-controller")
	if err != nil {
		return err
	}
	suite.procs = append(suite.procs, kcm)

	// A node whose kubelet supports native sidecars, as the nodes of a
	// current cluster do: --native-sidecars=auto reads it.
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-node"}}
	if node, err = suite.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return err
	}
	node.Status.NodeInfo.KubeletVersion = "v1.36.3"
	if _, err = suite.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}

	if out, err := kubectl("apply", "-k", filepath.Join(suite.repo, "deploy/overlays/e2e-local")); err != nil {
		return fmt.Errorf("kubectl apply -k deploy/overlays/e2e-local: %w\n%s", err, out)
	}
	if suite.ca, err = certs.NewCA(certs.Options{CommonName: "meshinject-e2e-ca"}); err != nil {
		return err
	}
	for _, mwc := range []string{mwcDefault, mwcCanary} {
		if err := setCABundle(ctx, mwc, suite.ca.CertPEM); err != nil {
			return err
		}
	}
	if suite.def, err = startServer("default", defaultPort, nil); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: control plane and webhook up in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// setupExisting uses the cluster of the current kubeconfig, where
// deploy/overlays/kind is installed (make e2e-kind).
func setupExisting() error {
	suite.istio = os.Getenv("E2E_ISTIO") // optional: the scenarios that need it skip without
	suite.kubectl = os.Getenv("E2E_KUBECTL")
	if suite.kubectl == "" {
		suite.kubectl = "kubectl"
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return err
	}
	suite.cfg = cfg
	if suite.kubeconfig, err = writeKubeconfig("existing", cfg, ""); err != nil {
		return err
	}
	suite.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// needsLocal skips scenarios that start, stop or reconfigure webhook
// processes, which only the local control plane allows.
func needsLocal(t *testing.T) {
	t.Helper()
	if !suite.local {
		t.Skip("controls meshinject processes: local control plane only (make test-e2e)")
	}
}
