//go:build node

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeRunsPod: the kubelet starts a plain pod (this project's pause
// image as its container) and reports it Ready.
func TestNodeRunsPod(t *testing.T) {
	needsNode(t)
	ns := namespace(t, "plain", nil)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: pauseImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	start := time.Now()
	create(t, ns, pod)
	eventually(t, wait, "pod plain Ready", func() error { return podReady(t.Context(), ns, "plain") })
	t.Logf("plain pod Ready %s after create", time.Since(start).Round(10*time.Millisecond))
}

// TestNodeServiceAndDNS: cluster DNS answers through its Service, which
// kube-proxy routes to the CoreDNS pod: kubernetes.default resolves to the
// API server's Service address.
func TestNodeServiceAndDNS(t *testing.T) {
	needsNode(t)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return nodeTier.node.ns.dial(ctx, network, net.JoinHostPort(clusterDNS, "53"))
			}}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			addrs, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(addrs, []string{apiServerIP}) {
				t.Fatalf("kubernetes.default.svc.cluster.local = %v, want [%s]", addrs, apiServerIP)
			}
		})
	}
}

// TestNodeKeepsMachineSettings: kubelet saw its kernel settings through
// the files bound over them in the mount namespace, and the machine's own
// values are what they were.
func TestNodeKeepsMachineSettings(t *testing.T) {
	needsNode(t)
	for k, want := range kubeletSysctls {
		out, err := nodeTier.node.ns.run(t.Context(), "cat", "/proc/sys/"+k)
		if err != nil {
			t.Fatalf("read %s in the namespace: %v", k, err)
		}
		if got := strings.TrimSpace(out); got != want {
			t.Errorf("%s in the namespace = %s, want kubelet's %s", k, got, want)
		}
		host, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(host)); got != nodeTier.before.sysctls["/proc/sys/"+k] {
			t.Errorf("%s on the machine = %s, was %s", k, got, nodeTier.before.sysctls["/proc/sys/"+k])
		}
	}
}

// podReady returns nil once the pod's Ready condition is true.
func podReady(ctx context.Context, ns, name string) error {
	pod, err := suite.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return &notReady{pod: pod}
}

type notReady struct{ pod *corev1.Pod }

func (e *notReady) Error() string {
	var b strings.Builder
	b.WriteString("pod " + e.pod.Name + " " + string(e.pod.Status.Phase))
	for _, s := range append(slices.Clone(e.pod.Status.InitContainerStatuses), e.pod.Status.ContainerStatuses...) {
		if w := s.State.Waiting; w != nil {
			b.WriteString("; " + s.Name + ": " + w.Reason + " " + w.Message)
		}
		if term := s.State.Terminated; term != nil {
			b.WriteString("; " + s.Name + ": terminated " + term.Reason + " " + term.Message)
		}
	}
	return b.String()
}

// TestNodeRunsHTTPBin: examples/httpbin.yaml, applied as it is to a
// namespace meshinject does not serve, runs on the node (go-httpbin built
// from the Go module proxy at the example's version, under the example's
// image name) and answers through its Service's ClusterIP, which
// kube-proxy routes to the pod.
func TestNodeRunsHTTPBin(t *testing.T) {
	needsNode(t)
	ns := namespace(t, "httpbin", nil)
	mustKubectl(t, "-n", ns, "apply", "-f", filepath.Join(suite.repo, "examples/httpbin.yaml"))
	rollout(t, ns, "httpbin")
	svc, err := suite.client.CoreV1().Services(ns).Get(t.Context(), "httpbin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nodeTier.node.ns.dial}}
	for path, want := range map[string]string{"/status/200": "", "/get?probe=node": `"probe"`} {
		url := fmt.Sprintf("http://%s/%s", net.JoinHostPort(svc.Spec.ClusterIP, "8000"), strings.TrimPrefix(path, "/"))
		eventually(t, wait, "GET "+url, func() error {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				return fmt.Errorf("%s: %s", resp.Status, body)
			}
			return nil
		})
	}
}
