//go:build e2e

package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Addresses the test gives a pod that no kubelet runs.
const (
	testPodIP  = "10.244.0.9"
	testHostIP = "10.0.0.1"
)

// TestAgentAndIstiodAcceptProxy: Istio's pilot-agent, started with the
// istio-proxy container's command line and environment exactly as
// meshinject injected them into a pod created through the API server
// (downward-API values filled in from the created pod, the istio-token
// from a real TokenRequest, the root certificate from istiod's
// istio-ca-root-cert ConfigMap), obtains a workload certificate from
// istiod for the pod's service account and writes Envoy's bootstrap for
// the pod. Only istiod's address is redirected to the local process, and
// Envoy is a stand-in (envoystandin) that records its arguments and
// bootstrap and asks the agent's SDS server for the certificate as Envoy
// does. A gateway runs in router mode.
func TestAgentAndIstiodAcceptProxy(t *testing.T) {
	needsIstio(t)
	needsLocal(t)
	istiod := startIstiod(t)
	ns := namespace(t, "agent", map[string]string{"istio-injection": "enabled"})
	createServiceAccount(t, ns, "reviews")
	sidecar := appPod("reviews", withLabels("version", "v2"))
	sidecar.Spec.ServiceAccountName = "reviews"
	gateway := gatewayPod("ingress")
	for _, c := range []struct {
		pod  *corev1.Pod
		mode string // node ID prefix
	}{{sidecar, "sidecar"}, {gateway, "router"}} {
		t.Run(c.mode, func(t *testing.T) {
			pod := create(t, ns, c.pod)
			rec := runAgent(t, pod, istiod)
			checkWorkloadCert(t, rec, fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, pod.Spec.ServiceAccountName))
			checkBootstrap(t, rec, pod, c.mode)
		})
	}
}

// runAgent runs pilot-agent as the kubelet would run pod's istio-proxy
// container and returns the stand-in Envoy's record directory once the
// stand-in has the workload certificate. The agent stops when the test
// ends.
func runAgent(t *testing.T, pod *corev1.Pod, istiod *istiodProc) string {
	t.Helper()
	proxy := find(pod.Spec.Containers, "istio-proxy")
	if proxy == nil {
		proxy = find(pod.Spec.InitContainers, "istio-proxy")
	}
	if proxy == nil {
		t.Fatalf("no istio-proxy in %s", pod.Name)
	}
	root, rec := t.TempDir(), t.TempDir()
	// The proxyv2 image's one file the agent reads: Istio's bootstrap
	// template (its Dockerfile copies it there).
	tmpl, err := os.ReadFile(filepath.Join(suite.istioModule, "tools/packaging/common/envoy_bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "var/lib/istio/envoy/envoy_bootstrap_tmpl.json"), string(tmpl))
	fillVolumes(t, pod, proxy, root)
	env := containerEnv(t, pod, proxy)
	// istiod's address: the injected CA_ADDR is istiod's Service; without
	// it the agent takes the discovery address for the CA too, with the
	// server name to verify from ISTIOD_SAN.
	if got := env["CA_ADDR"]; got != "istiod.istio-system.svc:15012" {
		t.Errorf("CA_ADDR %q, want istiod's Service, istiod.istio-system.svc:15012", got)
	}
	delete(env, "CA_ADDR")
	env["ISTIOD_SAN"] = "istiod.istio-system.svc"
	env["PROXY_CONFIG"] = redirectProxyConfig(t, env["PROXY_CONFIG"], istiod.secureGRPC)
	env["ENVOY_STANDIN_DIR"] = rec
	env["PATH"] = os.Getenv("PATH")
	args := make([]string, len(proxy.Args))
	for i, a := range proxy.Args {
		args[i] = expand(a, env)
	}
	var environ []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		environ = append(environ, k+"="+env[k])
	}
	p, err := startProcessEnv("pilot-agent-"+pod.Name, root, environ, filepath.Join(suite.istio, "pilot-agent"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	eventually(t, 2*wait, "the stand-in Envoy gets the workload certificate from pilot-agent", func() error {
		if b, err := os.ReadFile(filepath.Join(rec, "error")); err == nil {
			t.Fatalf("stand-in Envoy: %s\npilot-agent:\n%s\nistiod:\n%s", b, p.tail(), istiod.tail())
		}
		if p.exited() {
			t.Fatalf("pilot-agent %s exited:\n%s", strings.Join(args, " "), p.tail())
		}
		_, err := os.Stat(filepath.Join(rec, "cert-chain.pem"))
		return err
	})
	return rec
}

// fillVolumes makes the istio-proxy container's mounts under root (the
// agent's working directory: its paths are relative), with what the
// kubelet would put there: the projected token from a TokenRequest, the
// root certificate from the ConfigMap, the pod's labels and annotations.
func fillVolumes(t *testing.T, pod *corev1.Pod, c *corev1.Container, root string) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		v := vols[m.Name]
		switch {
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if sat := src.ServiceAccountToken; sat != nil {
					writeFile(t, filepath.Join(dir, sat.Path), serviceAccountToken(t, pod, sat))
				}
			}
		case v.ConfigMap != nil:
			cm := waitConfigMap(t, pod.Namespace, v.ConfigMap.Name)
			for k, val := range cm.Data {
				writeFile(t, filepath.Join(dir, k), val)
			}
		case v.DownwardAPI != nil:
			for _, it := range v.DownwardAPI.Items {
				writeFile(t, filepath.Join(dir, it.Path), downwardMap(t, pod, it.FieldRef))
			}
		}
	}
}

// serviceAccountToken is a token for pod's service account with the
// projected source's audience and lifetime, bound to the pod.
func serviceAccountToken(t *testing.T, pod *corev1.Pod, sat *corev1.ServiceAccountTokenProjection) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: sat.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if sat.Audience != "" {
		req.Spec.Audiences = []string{sat.Audience}
	}
	tok, err := suite.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", pod.Namespace, pod.Spec.ServiceAccountName, err)
	}
	return tok.Status.Token
}

// waitConfigMap waits for a ConfigMap (istiod writes istio-ca-root-cert
// into every namespace).
func waitConfigMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	var cm *corev1.ConfigMap
	eventually(t, wait, "ConfigMap "+ns+"/"+name, func() error {
		var err error
		cm, err = suite.client.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
		return err
	})
	return cm
}

// downwardMap writes metadata.labels or metadata.annotations as the
// kubelet does: key="value" lines, sorted.
func downwardMap(t *testing.T, pod *corev1.Pod, ref *corev1.ObjectFieldSelector) string {
	t.Helper()
	var m map[string]string
	switch ref.FieldPath {
	case "metadata.labels":
		m = pod.Labels
	case "metadata.annotations":
		m = pod.Annotations
	default:
		t.Fatalf("downward API field %s: not filled in by the test", ref.FieldPath)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v, _ := json.Marshal(m[k])
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.String()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// containerEnv is c's environment as the kubelet gives it: values with
// $(VAR) expanded, field references from the created pod (and the test's
// pod and host IPs), resource references from c's resources.
func containerEnv(t *testing.T, pod *corev1.Pod, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = fieldValue(t, pod, e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = resourceValue(c, e.ValueFrom.ResourceFieldRef)
		default:
			t.Fatalf("env %s: a source the test does not fill in", e.Name)
		}
	}
	return env
}

func fieldValue(t *testing.T, pod *corev1.Pod, path string) string {
	t.Helper()
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "spec.nodeName":
		return "e2e-node"
	case "status.podIP", "status.podIPs":
		return testPodIP
	case "status.hostIP", "status.hostIPs":
		return testHostIP
	}
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")]
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")]
	}
	t.Fatalf("field reference %s: not filled in by the test", path)
	return ""
}

// resourceValue is a resource reference as the kubelet resolves it for a
// container with limits or requests set: the value over the divisor,
// rounded up ("0" when unset: the test has no node allocatable).
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) string {
	list := c.Resources.Limits
	name := strings.TrimPrefix(ref.Resource, "limits.")
	if r, ok := strings.CutPrefix(ref.Resource, "requests."); ok {
		list, name = c.Resources.Requests, r
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "0"
	}
	div := ref.Divisor
	if div.IsZero() {
		return fmt.Sprint(q.Value())
	}
	return fmt.Sprint((q.MilliValue() + div.MilliValue() - 1) / div.MilliValue())
}

// expand replaces $(VAR) with env's VAR, as the kubelet does.
func expand(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "$("+k+")", v)
	}
	return s
}

// redirectProxyConfig is the PROXY_CONFIG of the injected pod with the
// discovery address pointed at the local istiod and Envoy at the stand-in;
// nothing else changes.
func redirectProxyConfig(t *testing.T, raw, discovery string) string {
	t.Helper()
	pc := map[string]any{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &pc); err != nil {
			t.Fatalf("PROXY_CONFIG %q: %v", raw, err)
		}
	}
	pc["discoveryAddress"] = discovery
	pc["binaryPath"] = filepath.Join(suite.istio, "envoystandin")
	b, err := json.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkWorkloadCert: the certificate istiod signed for the agent is for
// the pod's SPIFFE identity.
func checkWorkloadCert(t *testing.T, rec, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rec, "cert-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("workload certificate: not PEM:\n%s", b)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	if !slices.Contains(ids, want) {
		t.Errorf("workload certificate for %v, want %s", ids, want)
	}
	if time.Until(cert.NotAfter) <= 0 {
		t.Errorf("workload certificate expired at %s", cert.NotAfter)
	}
}

// checkBootstrap: Envoy's bootstrap names the pod as istiod knows it.
func checkBootstrap(t *testing.T, rec string, pod *corev1.Pod, mode string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rec, "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var boot struct {
		Node struct {
			ID       string         `json:"id"`
			Cluster  string         `json:"cluster"`
			Metadata map[string]any `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &boot); err != nil {
		t.Fatal(err)
	}
	n, md := boot.Node, boot.Node.Metadata
	wantID := fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", mode, testPodIP, pod.Name, pod.Namespace, pod.Namespace)
	if n.ID != wantID {
		t.Errorf("node ID %q, want %q", n.ID, wantID)
	}
	canonical := pod.Labels["service.istio.io/canonical-name"]
	if want := canonical + "." + pod.Namespace; n.Cluster != want {
		t.Errorf("node cluster %q, want %q", n.Cluster, want)
	}
	want := map[string]any{
		"NAME": pod.Name, "NAMESPACE": pod.Namespace, "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local",
		"WORKLOAD_NAME": pod.Name, "OWNER": fmt.Sprintf("kubernetes://apis/v1/namespaces/%s/pods/%s", pod.Namespace, pod.Name),
		"SERVICE_ACCOUNT": pod.Spec.ServiceAccountName,
	}
	if mode == "sidecar" {
		want["INTERCEPTION_MODE"] = "REDIRECT"
		want["APP_CONTAINERS"] = "app"
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("node metadata %s = %v, want %v", k, md[k], v)
		}
	}
	labels, _ := md["LABELS"].(map[string]any)
	for k, v := range pod.Labels {
		if labels[k] != v {
			t.Errorf("node metadata LABELS[%s] = %v, want %q", k, labels[k], v)
		}
	}
	if mode == "sidecar" {
		checkPodPorts(t, md["POD_PORTS"], pod)
	}
}

// checkPodPorts: the bootstrap's POD_PORTS are the app's container ports.
func checkPodPorts(t *testing.T, v any, pod *corev1.Pod) {
	t.Helper()
	s, _ := v.(string)
	var ports []corev1.ContainerPort
	if err := json.Unmarshal([]byte(s), &ports); err != nil {
		t.Errorf("node metadata POD_PORTS %q: %v", s, err)
		return
	}
	app := find(pod.Spec.Containers, "app")
	if app == nil || len(ports) != len(app.Ports) || (len(ports) > 0 && ports[0].ContainerPort != app.Ports[0].ContainerPort) {
		t.Errorf("node metadata POD_PORTS %s, want the app's %v", s, app.Ports)
	}
}

// istiodProc is a running istiod and its secure gRPC address (xDS and
// certificates).
type istiodProc struct {
	*process
	secureGRPC string
}
