//go:build node

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// meshinjectImage is the image `make image` builds and the chart names by
// default: the suite imports its archive into containerd, so the chart's
// reference resolves on the node without a registry.
const meshinjectImage = "ghcr.io/meshinject/meshinject:0.1.0"

// installTimeout bounds a chart install or upgrade until its Deployment is
// rolled out.
const installTimeout = 3 * time.Minute

// TestNodeChartSelfManaged runs the README's install commands (With Helm,
// self-managed TLS) against the node as written: the chart's Deployment
// starts two replicas from the image built here, with the chart's
// securityContext and probes, and a pod created in an
// istio-injection=enabled namespace is injected by them, the API server
// reaching the webhook through the Service's kube-proxy rules.
func TestNodeChartSelfManaged(t *testing.T) {
	needsNode(t)
	chart := filepath.Join(suite.repo, "deploy/charts/meshinject")
	start := time.Now()
	helm(t, "install", "meshinject", chart, "-n", "meshinject", "--create-namespace", "--set", "tls.mode=self-managed")
	t.Cleanup(func() { uninstall(t, "meshinject", "meshinject") })
	mustKubectl(t, "label", "namespace", "meshinject", "istio-injection=disabled", "--overwrite")
	shop := namespaceNamed(t, "shop", nil)
	mustKubectl(t, "label", "namespace", shop, "istio-injection=enabled")
	rollout(t, "meshinject", "meshinject")
	t.Logf("chart installed and both replicas Ready in %s", time.Since(start).Round(100*time.Millisecond))

	assertInjectorPods(t, "meshinject", "app=meshinject", meshinjectImage)
	svc := serviceChain(t, "meshinject/meshinject:https-webhook")
	before := chainPackets(t, svc)
	pod := create(t, shop, pendingPod("web"))
	assertSidecar(t, pod, true, "default")
	if after := chainPackets(t, svc); after <= before {
		t.Errorf("kube-proxy's chain of the webhook Service counted %d packets before the pod and %d after: the API server did not go through the Service", before, after)
	}
}

// pendingPod is an application pod that the scheduler leaves Pending (its
// node selector matches no node): the injection is what the scenarios
// look at, and the proxy image it names is not on this node.
func pendingPod(name string) *corev1.Pod {
	p := appPod(name)
	p.Spec.NodeSelector = map[string]string{"meshinject.io/e2e": "never-scheduled"}
	return p
}

// uninstall removes the release and waits until its pods are gone too
// (helm's --wait does not wait for terminating pods, which still serve
// through the next release's Service until they end).
func uninstall(t *testing.T, release, name string) {
	t.Helper()
	helm(t, "uninstall", release, "-n", "meshinject", "--wait", "--timeout=2m")
	eventually(t, 2*wait, "the pods of "+release+" gone", func() error {
		pods, err := suite.client.CoreV1().Pods("meshinject").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		return nil
	})
}

// mustKubectl runs kubectl, failing the test on an error.
func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// rollout waits until the Deployment's rollout is complete.
func rollout(t *testing.T, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), installTimeout)
	defer cancel()
	out, err := command(ctx, suite.kubectl, "--kubeconfig="+suite.kubeconfig, "-n", ns, "rollout", "status", "deployment/"+name,
		fmt.Sprintf("--timeout=%s", installTimeout)).CombinedOutput()
	if err != nil {
		pods, _ := kubectl("-n", ns, "get", "pods", "-o", "wide")
		ev, _ := kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp")
		t.Fatalf("rollout of %s/%s: %v\n%s\n%s\n%s", ns, name, err, out, pods, ev)
	}
}

// assertInjectorPods checks the injector's running pods: the image the
// suite imported, and the process inside running as 65532 (the image's and
// the chart's nonroot user), found through the pod's cgroup.
func assertInjectorPods(t *testing.T, ns, selector, image string) {
	t.Helper()
	pods, err := suite.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no pod %s in %s", selector, ns)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		c := p.Spec.Containers[0]
		if c.Image != image {
			t.Errorf("pod %s: image %s, want %s", p.Name, c.Image, image)
		}
		uids := containerUIDs(t, string(p.UID))
		if len(uids) == 0 {
			t.Errorf("pod %s: no process found in its cgroup", p.Name)
		}
		for _, uid := range uids {
			if uid != "65532" {
				t.Errorf("pod %s: a process runs as uid %s, want 65532", p.Name, uid)
			}
		}
	}
}

// containerUIDs returns the real uids of the processes of pod uid's
// application containers (not its sandbox), from the node's memory cgroups.
func containerUIDs(t *testing.T, podUID string) []string {
	t.Helper()
	root := filepath.Join("/sys/fs/cgroup/memory", nodeTier.node.cgroupRoot)
	var uids []string
	for _, pid := range pidsInCgroups(root) {
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cg), "_", "-"), podUID) {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if strings.HasSuffix(exe, "/pause") {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(status)))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 1 && f[0] == "Uid:" {
				uids = append(uids, f[1])
			}
		}
	}
	return uids
}

var serviceComment = regexp.MustCompile(`^-A (KUBE-SVC-[A-Z0-9]+) .*--comment "?([^ "]+)`)

// serviceChain returns the name of kube-proxy's KUBE-SVC chain of the
// Service port comment ("namespace/name:port"), waiting for it.
func serviceChain(t *testing.T, comment string) string {
	t.Helper()
	var chain string
	eventually(t, wait, "kube-proxy's chain for "+comment, func() error {
		out, err := nodeTier.node.ns.run(t.Context(), "iptables-save", "-t", "nat")
		if err != nil {
			return fmt.Errorf("iptables-save: %w: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if m := serviceComment.FindStringSubmatch(l); m != nil && m[2] == comment {
				chain = m[1]
				return nil
			}
		}
		return fmt.Errorf("no KUBE-SVC chain for %s", comment)
	})
	return chain
}

// chainPackets returns the packets counted by the rules that jump to
// chain from KUBE-SERVICES (the Service's ClusterIP rule).
func chainPackets(t *testing.T, chain string) int {
	t.Helper()
	out, err := nodeTier.node.ns.run(t.Context(), "iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n", "-v", "-x")
	if err != nil {
		t.Fatalf("iptables -L KUBE-SERVICES: %v\n%s", err, out)
	}
	total := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[2] == chain {
			n, _ := strconv.Atoi(f[0])
			total += n
		}
	}
	return total
}

// servedSerial returns the serial of the certificate served at addr
// (ip:port in the node's network namespace).
func servedSerial(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := nodeTier.node.ns.dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the served certificate
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// pemSerial returns the serial of the first certificate in b.
func pemSerial(b []byte) (string, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return "", fmt.Errorf("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return c.SerialNumber.String(), nil
}
