//go:build node

package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The node tier's Istio: istiod of revision istioRevision, installed by
// Istio's own base and istio-discovery charts from the module cache with
// the pilot image built here, beside meshinject installed by its chart
// for the default revision (istio-injection=enabled), its pods pointed at
// that istiod's Service, as README "Beside istiod" says.
const (
	istioRevision = "node"
	istiodAddress = "istiod-" + istioRevision + ".istio-system.svc:15012"
	netcheckImage = "localhost/meshinject-e2e/netcheck:1"
)

// meshProxyImage is the proxyv2 image built here, which meshinject injects
// once installMesh set the chart's global.hub and global.tag.
var meshProxyImage string

// istioImages returns the hub and tag of the Istio images built here and
// the istio.io/istio module folder, or skips the test saying which is not
// set.
func istioImages(t *testing.T) (hub, tag, module string) {
	t.Helper()
	needsNode(t)
	hub, tag, module = os.Getenv("E2E_ISTIO_HUB"), os.Getenv("E2E_ISTIO_TAG"), os.Getenv("E2E_ISTIO_MODULE")
	if hub == "" || tag == "" || module == "" {
		t.Skip("E2E_ISTIO_HUB, E2E_ISTIO_TAG and E2E_ISTIO_MODULE are not set (make test-node sets them)")
	}
	return hub, tag, module
}

// installMesh installs Istio's base chart and istiod (revision
// istioRevision), then meshinject's chart in self-managed TLS with Istio's
// images and istiod's address; everything is uninstalled when the test
// ends.
func installMesh(t *testing.T) {
	t.Helper()
	hub, tag, module := istioImages(t)
	charts := filepath.Join(module, "manifests/charts")
	meshProxyImage = hub + "/proxyv2:" + tag
	start := time.Now()
	helm(t, "install", "istio-base", filepath.Join(charts, "base"), "-n", "istio-system", "--create-namespace",
		"--set", "defaultRevision=")
	t.Cleanup(func() { helm(t, "uninstall", "istio-base", "-n", "istio-system", "--wait", "--timeout=2m") })
	helm(t, "install", "istiod-"+istioRevision, filepath.Join(charts, "istio-control/istio-discovery"), "-n", "istio-system",
		"--set", "revision="+istioRevision, "--set", "global.hub="+hub, "--set", "global.tag="+tag,
		"--set", "global.imagePullPolicy=IfNotPresent", "--set", "pilot.autoscaleEnabled=false",
		"--set", "pilot.resources.requests.cpu=10m", "--set", "pilot.resources.requests.memory=128Mi")
	t.Cleanup(func() {
		helm(t, "uninstall", "istiod-"+istioRevision, "-n", "istio-system", "--wait", "--timeout=2m")
	})
	rollout(t, "istio-system", "istiod-"+istioRevision)
	t.Logf("istiod (revision %s) Ready %s after install", istioRevision, time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	helm(t, "install", "meshinject", filepath.Join(suite.repo, "deploy/charts/meshinject"), "-n", "meshinject", "--create-namespace",
		"--set", "tls.mode=self-managed", "--set", "global.hub="+hub, "--set", "global.tag="+tag,
		"--set", "global.caAddress="+istiodAddress, "--set", "meshConfig.defaultConfig.discoveryAddress="+istiodAddress)
	t.Cleanup(func() { uninstall(t, "meshinject", "meshinject") })
	mustKubectl(t, "label", "namespace", "meshinject", "istio-injection=disabled", "--overwrite")
	rollout(t, "meshinject", "meshinject")
	webhookServes(t, namespace(t, "mesh-probe", map[string]string{"istio-injection": "enabled"}))
	t.Logf("meshinject Ready %s after install", time.Since(start).Round(100*time.Millisecond))
}

// TestNodeMesh runs injected pods on the node: each scenario creates its
// workloads in namespaces of its own, labelled istio-injection=enabled,
// served by the chart-installed meshinject and by istiod running as a pod.
func TestNodeMesh(t *testing.T) {
	installMesh(t)
	t.Run("HTTPBin", testMeshHTTPBin)
	t.Run("Capture", testMeshCapture)
	t.Run("NativeSidecars", testMeshNativeSidecars)
	t.Run("Classic", testMeshClassic)
	t.Run("Probes", testMeshProbes)
	t.Run("Gateway", testMeshGateway)
	t.Run("TrafficManagement", testMeshTrafficManagement)
	t.Run("Reinvocation", testMeshReinvocation)
	t.Run("CNI", testMeshCNI)
	t.Run("StartTime", testMeshStartTime)
	t.Run("Churn", testMeshChurn)
}

// testMeshHTTPBin: examples/httpbin.yaml as it is, in an enabled
// namespace. The pod turns Ready; istio-proxy holds a workload certificate
// whose SPIFFE ID names the pod's ServiceAccount; the probes were
// rewritten to the agent's :15020/app-health and pass through it; a
// request from another pod to the Service reaches httpbin and is captured
// inbound; a request from httpbin's pod to another Service is captured
// outbound.
func testMeshHTTPBin(t *testing.T) {
	ns := namespace(t, "mesh-httpbin", map[string]string{"istio-injection": "enabled"})
	mustKubectl(t, "-n", ns, "apply", "-f", filepath.Join(suite.repo, "examples/httpbin.yaml"))
	rollout(t, ns, "httpbin")
	pod := podsOf(t, ns, "app=httpbin", 1)[0]
	assertSidecarImage(t, &pod, true, "default", meshProxyImage)
	assertProbesRewritten(t, &pod, "httpbin")

	want := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/httpbin", ns)
	if got := workloadSPIFFE(t, ns, pod.Name); got != want {
		t.Errorf("istio-proxy's workload certificate names %q, want %q", got, want)
	}

	// An injected client in the namespace calls the Service, as Istio's
	// walkthrough's curl pod does (go-httpbin itself calls nothing): the
	// client's proxy captures the call outbound to the Service's address,
	// httpbin's inbound to its own.
	client := runNetcheck(t, ns, "client", nil)
	svc, err := suite.client.CoreV1().Services(ns).Get(t.Context(), "httpbin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := fetch(t, client, fmt.Sprintf("http://httpbin.%s.svc:8000/get?from=client", ns))
	if !strings.Contains(body, `"from"`) {
		t.Errorf("httpbin's answer through its Service: %s", body)
	}
	assertCaptured(t, ns, client.Name, "outbound", net.JoinHostPort(svc.Spec.ClusterIP, "8000"), true)
	assertCaptured(t, ns, pod.Name, "inbound", net.JoinHostPort(pod.Status.PodIP, "8080"), true)
}

// assertProbesRewritten checks the app container's probes point at the
// agent's app-health endpoint.
func assertProbesRewritten(t *testing.T, pod *corev1.Pod, container string) {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		if c.Name != container {
			continue
		}
		for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil {
				continue
			}
			if p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != 15020 || !strings.HasPrefix(p.HTTPGet.Path, "/app-health/"+container+"/") {
				t.Errorf("%s probe of %s = %+v, want GET :15020/app-health/%s/...", kind, container, p.HTTPGet, container)
			}
		}
		return
	}
	t.Fatalf("pod %s has no container %s", pod.Name, container)
}

// standinRecord is a line the Envoy stand-in (envoystandin, a test double)
// wrote on istio-proxy's log.
type standinRecord struct {
	Kind        string   `json:"kind"`
	Secret      string   `json:"secret"`
	URIs        []string `json:"uris"`
	Direction   string   `json:"direction"`
	OriginalDst string   `json:"original_dst"`
	Source      string   `json:"source"`
	Mode        string   `json:"mode"`
	Error       string   `json:"error"`
	Listeners   []string `json:"listeners"`
}

// standinRecords reads the stand-in's records from istio-proxy's log.
func standinRecords(t *testing.T, ns, pod string) ([]standinRecord, error) {
	t.Helper()
	out, err := kubectl("-n", ns, "logs", pod, "-c", "istio-proxy")
	if err != nil {
		return nil, fmt.Errorf("logs of %s/%s istio-proxy: %w\n%s", ns, pod, err, out)
	}
	var recs []standinRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "envoystandin ")
		if !ok {
			continue
		}
		var r standinRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("stand-in record %q: %w", line, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// workloadSPIFFE returns the SPIFFE ID of the workload certificate the
// pod's agent served over SDS, as the stand-in recorded it.
func workloadSPIFFE(t *testing.T, ns, pod string) string {
	t.Helper()
	var id string
	eventually(t, wait, "the workload certificate of "+pod, func() error {
		recs, err := standinRecords(t, ns, pod)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Kind == "certificate" && r.Secret == "default" && len(r.URIs) == 1 {
				id = r.URIs[0]
				return nil
			}
		}
		return fmt.Errorf("no certificate record among %d", len(recs))
	})
	return id
}

// assertCaptured checks whether the pod's stand-in recorded a connection
// of direction to dst.
func assertCaptured(t *testing.T, ns, pod, direction, dst string, want bool) {
	t.Helper()
	assertCapturedMode(t, ns, pod, direction, dst, want, "")
}

// assertCapturedMode is assertCaptured, and a captured connection's mode
// is mode (redirect when "").
func assertCapturedMode(t *testing.T, ns, pod, direction, dst string, want bool, mode string) {
	t.Helper()
	got := false
	check := func() error {
		recs, err := standinRecords(t, ns, pod)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Kind == "capture" && r.Direction == direction && r.OriginalDst == dst {
				if r.Error != "" {
					t.Errorf("%s capture to %s: %s", direction, dst, r.Error)
				}
				if r.Mode != cmp.Or(mode, "redirect") {
					t.Errorf("%s capture to %s: mode %s, want %s", direction, dst, r.Mode, cmp.Or(mode, "redirect"))
				}
				got = true
				return nil
			}
		}
		return fmt.Errorf("no %s capture to %s", direction, dst)
	}
	if want {
		eventually(t, 10*time.Second, fmt.Sprintf("%s capture of %s to %s", direction, pod, dst), check)
		return
	}
	time.Sleep(time.Second) // the log's last lines
	if _ = check(); got {
		t.Errorf("%s connection of %s to %s was captured; it should have bypassed the proxy", direction, pod, dst)
	}
}

// runNetcheck starts a netcheck pod serving on 8080 and 9090 and returns
// it once Ready.
func runNetcheck(t *testing.T, ns, name string, annotations map[string]string, opts ...podOpt) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", "8080", "9090"},
			Ports:          []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 9090}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
		}}},
	}
	for _, o := range opts {
		o(p)
	}
	create(t, ns, p)
	eventually(t, 2*wait, "pod "+name+" Ready", func() error { return podReady(t.Context(), ns, name) })
	got, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// fetch asks the netcheck pod to GET u from inside its network namespace
// and returns the answer's body, failing the test on an error status.
func fetch(t *testing.T, from *corev1.Pod, u string) string {
	t.Helper()
	body, err := fetchErr(t.Context(), from, u)
	if err != nil {
		t.Fatalf("%s GET %s: %v", from.Name, u, err)
	}
	return body
}

func fetchErr(ctx context.Context, from *corev1.Pod, u string) (string, error) {
	q := fmt.Sprintf("http://%s/fetch?url=%s", net.JoinHostPort(from.Status.PodIP, "8080"), url.QueryEscape(u))
	body, status, err := nodeGet(ctx, q)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%d: %s", status, body)
	}
	return body, err
}
