//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshinject/meshinject/certs"
)

// Ports of the local webhook processes; deploy/overlays/e2e-local points
// the default and canary webhooks at them.
const (
	defaultPort = 19443
	canaryPort  = 19444
	// mwcDefault and mwcCanary are the MutatingWebhookConfigurations of
	// deploy/.
	mwcDefault = "meshinject-sidecar-injector"
	mwcCanary  = "meshinject-sidecar-injector-canary"
	// proxyImage is the proxy image of deploy/base's values.
	proxyImage = "docker.io/istio/proxyv2:1.31.4"
	// wait bounds every poll of the suite.
	wait = 60 * time.Second
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

// localIPs are the serving addresses of the local webhooks.
var localIPs = []net.IP{net.IPv4(127, 0, 0, 1)}

// suite is the state TestMain sets up for every scenario.
var suite struct {
	local      bool   // a control plane of our own, not an existing cluster
	repo       string // repository root
	work       string // scratch directory
	kubectl    string
	kubeconfig string // system:masters user
	cfg        *rest.Config
	client     kubernetes.Interface
	env        *envtest.Environment

	meshinject  string // binary
	certManager string // directory of the trimmed cert-manager binaries
	istio       string // directory of Istio's binaries: istioctl, pilot-agent, pilot-discovery
	istioModule string // istio.io/istio in the module cache (CRDs, charts)
	istioChart  string // Istio's istio-discovery chart rendered (istio-sidecar-injector.yaml, mesh)
	auditLog    string // the API server's audit log (local control plane)
	ca          *certs.Bundle
	def         *server // meshinject serve for the default revision
	procs       []*process
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
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

// writeKubeconfig writes cfg as a kubeconfig file, impersonating as when
// set, and returns its path.
func writeKubeconfig(name string, cfg *rest.Config, as string) (string, error) {
	c := clientcmdapi.NewConfig()
	c.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile}
	c.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData,
		ClientCertificate: cfg.CertFile, ClientKey: cfg.KeyFile, Token: cfg.BearerToken, Impersonate: as,
	}
	c.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e"}
	c.CurrentContext = "e2e"
	path := filepath.Join(suite.work, name+".kubeconfig")
	return path, clientcmd.WriteToFile(*c, path)
}

// kubectl runs the kubectl we built against the suite's cluster.
func kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := exec.CommandContext(ctx, suite.kubectl, append([]string{"--kubeconfig=" + suite.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// setCABundle writes caPEM into every webhook of the configuration name.
func setCABundle(ctx context.Context, name string, caPEM []byte) error {
	mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var ops []string
	for i := range mwc.Webhooks {
		ops = append(ops, fmt.Sprintf(`{"op":"add","path":"/webhooks/%d/clientConfig/caBundle","value":%q}`, i, base64.StdEncoding.EncodeToString(caPEM)))
	}
	_, err = suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, types.JSONPatchType,
		[]byte("["+strings.Join(ops, ",")+"]"), metav1.PatchOptions{})
	return err
}

// process is a subprocess whose output goes to a log file in the scratch
// directory.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(name, bin string, args ...string) (*process, error) {
	return startProcessEnv(name, "", nil, bin, args...)
}

// startProcessEnv starts a process in dir ("": the test's) with the
// environment env (nil: the test's).
func startProcessEnv(name, dir string, env []string, bin string, args ...string) (*process, error) {
	log := filepath.Join(suite.work, name+".log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir, cmd.Env = f, f, dir, env
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to 20 s before killing the process.
func (p *process) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process log, for failure messages.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// server is a `meshinject serve` subprocess with its directories.
type server struct {
	*process
	port       int
	healthPort int // /healthz and /readyz; /metrics is on port - 2000
	certDir    string
	configDir  string
}

// startServer starts meshinject serve on 127.0.0.1:port with a serving
// certificate from the suite's CA in its own cert dir (unless extra selects
// another TLS mode) and a config dir holding deploy/base's configuration
// files. It returns once /readyz answers 200.
func startServer(name string, port int, extra []string) (*server, error) {
	s := &server{port: port, healthPort: port - 1000,
		certDir: filepath.Join(suite.work, name, "tls"), configDir: filepath.Join(suite.work, name, "config")}
	if err := os.MkdirAll(s.configDir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"config", "values", "mesh"} {
		b, err := os.ReadFile(filepath.Join(suite.repo, "deploy/base/injector", f))
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(filepath.Join(s.configDir, f), b); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(s.certDir, certs.CertFile)); errors.Is(err, os.ErrNotExist) {
		serving, err := certs.NewServing(suite.ca, certs.Options{IPAddresses: localIPs})
		if err != nil {
			return nil, err
		}
		if err := certs.WriteDir(s.certDir, serving, suite.ca.CertPEM); err != nil {
			return nil, err
		}
	}
	args := append([]string{"serve", "--host=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--health-addr=127.0.0.1:" + strconv.Itoa(s.healthPort), "--metrics-addr=127.0.0.1:" + strconv.Itoa(s.port-2000), "--cert-dir=" + s.certDir,
		"--config-dir=" + s.configDir, "--kubeconfig=" + suite.kubeconfig, "--log-level=debug"}, extra...)
	return s, s.start(name, args)
}

func (s *server) start(name string, args []string) error {
	p, err := startProcess("meshinject-"+name, suite.meshinject, args...)
	if err != nil {
		return err
	}
	s.process = p
	suite.procs = append(suite.procs, p)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("meshinject %s exited:\n%s", name, p.tail())
		}
		if code, _ := s.get("/readyz"); code == http.StatusOK {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("meshinject %s not ready after %s:\n%s", name, wait, p.tail())
}

// restart starts the same command again after a stop.
func (s *server) restart() error {
	s.stop()
	return s.start(strings.TrimPrefix(s.name, "meshinject-"), s.cmd.Args[1:])
}

// get fetches /metrics from the metrics port, other paths from the health
// port.
func (s *server) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	port := s.healthPort
	if path == "/metrics" {
		port = s.port - 2000
	}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// servedCert returns the leaf certificate the webhook port presents.
func (s *server) servedCert() ([]byte, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", s.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the served certificate
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw, nil
}

// writeAtomic replaces path's content in one rename, as the kubelet's
// symlink swap of a mounted ConfigMap does.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
