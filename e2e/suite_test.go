//go:build e2e || node

package e2e

import (
	"bytes"
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
	// netns is the node tier's network namespace (/proc/PID/ns/net),
	// where its API server listens: kubectl, helm and the CLI run in it.
	// Empty for the e2e suite.
	netns string
}

// command returns the command bin args, run in the suite's network
// namespace when it has one.
func command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	if suite.netns == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + suite.netns, "--", bin}, args...)...)
}

// helm runs the pinned helm (E2E_OPS) against the suite's cluster.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	ops := os.Getenv("E2E_OPS")
	if ops == "" {
		t.Fatal("E2E_OPS is not set (run make test-e2e, which builds helm)")
	}
	// Not the test's context: uninstalls run in its cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	out, err := command(ctx, filepath.Join(ops, "helm"), append([]string{"--kubeconfig", suite.kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// meshinjectCLI runs the meshinject binary against the suite's cluster
// (also from a test's cleanup).
func meshinjectCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := command(ctx, suite.meshinject, append(args, "--kubeconfig", suite.kubeconfig)...).CombinedOutput()
	return string(out), err
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
	return kubectlContext(context.Background(), args...)
}

// kubectlContext runs kubectl within ctx, for at most wait.
func kubectlContext(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out, err := command(ctx, suite.kubectl, append([]string{"--kubeconfig=" + suite.kubeconfig}, args...)...).CombinedOutput()
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
func (p *process) stop() { p.stopWithin(20 * time.Second) }

// stopWithin sends SIGTERM and waits up to grace before killing the
// process.
func (p *process) stopWithin(grace time.Duration) {
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
	case <-time.After(grace):
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

// caBundlesSet is nil once every entry of the configurations has a caBundle.
func caBundlesSet(names ...string) error {
	for _, n := range names {
		mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range mwc.Webhooks {
			if !bytes.Contains(w.ClientConfig.CABundle, []byte("BEGIN CERTIFICATE")) {
				return fmt.Errorf("%s: entry %s has no caBundle", n, w.Name)
			}
		}
	}
	return nil
}
