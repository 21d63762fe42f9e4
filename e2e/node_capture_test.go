//go:build node

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// captureCase is a pod with traffic annotations and the connections
// expected to reach its proxy or to bypass it.
type captureCase struct {
	name        string
	annotations map[string]string
	// conns are the connections made: outbound from the pod (through its
	// netcheck's /fetch) or inbound to it (from the node).
	conns []captureConn
}

type captureConn struct {
	direction string // outbound or inbound
	// to is "svc:PORT" (the target Service), "pod:PORT" (the target pod)
	// or, inbound, "self:PORT" (the pod under test).
	to       string
	captured bool
	// recordedAs is the direction the stand-in records it with, when it is
	// not the connection's own (kubevirtInterfaces).
	recordedAs string
	// mode is the capture the stand-in sees (redirect or tproxy); "" for
	// redirect.
	mode string
}

// captureCases follow Istio's documented annotations
// (traffic.sidecar.istio.io/*, sidecar.istio.io/interceptionMode), with
// the node's Service range 10.96.0.0/16 and pod range 10.244.0.0/24.
var captureCases = []captureCase{
	{name: "default", conns: []captureConn{
		{direction: "outbound", to: "svc:8080", captured: true}, {direction: "outbound", to: "svc:9090", captured: true},
		{direction: "outbound", to: "pod:8080", captured: true},
		{direction: "inbound", to: "self:8080", captured: true}, {direction: "inbound", to: "self:9090", captured: true},
	}},
	{name: "exclude-outbound-ports", annotations: map[string]string{"traffic.sidecar.istio.io/excludeOutboundPorts": "9090"}, conns: []captureConn{
		{direction: "outbound", to: "svc:8080", captured: true}, {direction: "outbound", to: "svc:9090"},
	}},
	{name: "exclude-outbound-ranges", annotations: map[string]string{"traffic.sidecar.istio.io/excludeOutboundIPRanges": serviceCIDR}, conns: []captureConn{
		{direction: "outbound", to: "svc:8080"}, {direction: "outbound", to: "pod:8080", captured: true},
	}},
	{name: "include-outbound-ranges", annotations: map[string]string{"traffic.sidecar.istio.io/includeOutboundIPRanges": podCIDR}, conns: []captureConn{
		{direction: "outbound", to: "svc:8080"}, {direction: "outbound", to: "pod:8080", captured: true},
	}},
	{name: "exclude-inbound-ports", annotations: map[string]string{"traffic.sidecar.istio.io/excludeInboundPorts": "9090"}, conns: []captureConn{
		{direction: "inbound", to: "self:8080", captured: true}, {direction: "inbound", to: "self:9090"},
	}},
	{name: "include-inbound-ports", annotations: map[string]string{"traffic.sidecar.istio.io/includeInboundPorts": "8080"}, conns: []captureConn{
		{direction: "inbound", to: "self:8080", captured: true}, {direction: "inbound", to: "self:9090"},
	}},
	{name: "kubevirt-interfaces", annotations: map[string]string{"traffic.sidecar.istio.io/kubevirtInterfaces": "eth0"}, conns: []captureConn{
		// Traffic arriving on a VM's interface leaves the VM: Istio sends
		// it to the outbound listener.
		{direction: "inbound", to: "self:8080", captured: true, recordedAs: "outbound"},
	}},
	{name: "tproxy", annotations: map[string]string{"sidecar.istio.io/interceptionMode": "TPROXY"}, conns: []captureConn{
		{direction: "inbound", to: "self:8080", captured: true, mode: "tproxy"},
		{direction: "outbound", to: "svc:8080", captured: true},
	}},
}

// testMeshCapture: for each annotation of captureCases, an injected
// netcheck pod makes connections or receives them; each connection
// succeeds, and the Envoy stand-in of the pod records exactly the ones
// Istio's rules send to the proxy, with their original destinations. The
// table goes to the test's log.
func testMeshCapture(t *testing.T) {
	svc, target := startTarget(t)
	ns := namespace(t, "mesh-capture", map[string]string{"istio-injection": "enabled"})
	var table []string
	for _, c := range captureCases {
		t.Run(c.name, func(t *testing.T) {
			pod := runNetcheck(t, ns, c.name, c.annotations)
			dsts := make([]string, len(c.conns))
			for i, conn := range c.conns {
				dsts[i] = connect(t, pod, conn, svc.Spec.ClusterIP, target.Status.PodIP)
			}
			// The captured ones first: once their records are in the log,
			// the records of the others would be too.
			for _, captured := range []bool{true, false} {
				for i, conn := range c.conns {
					if conn.captured != captured {
						continue
					}
					assertCapturedMode(t, ns, pod.Name, cmp.Or(conn.recordedAs, conn.direction), dsts[i], captured, conn.mode)
					table = append(table, fmt.Sprintf("%-24s %-40s %-8s %-21s captured=%t", c.name,
						strings.Join(annotationList(c.annotations), ","), conn.direction, dsts[i], captured))
				}
			}
		})
	}
	t.Logf("capture table (case, annotations, connection, captured):\n%s", strings.Join(table, "\n"))
}

// connect makes one connection of a case, checks it was answered by the
// netcheck it was meant for, and returns its destination.
func connect(t *testing.T, pod *corev1.Pod, conn captureConn, svcIP, targetIP string) string {
	t.Helper()
	kind, port, _ := strings.Cut(conn.to, ":")
	host := map[string]string{"svc": svcIP, "pod": targetIP, "self": pod.Status.PodIP}[kind]
	dst := net.JoinHostPort(host, port)
	var body string
	var err error
	if conn.direction == "outbound" {
		body, err = fetchErr(t.Context(), pod, "http://"+dst+"/")
	} else {
		body, err = getFromNode(t.Context(), "http://"+dst+"/")
	}
	if err != nil || !strings.Contains(body, "port "+port) {
		t.Errorf("%s to %s: %v %q", conn.direction, dst, err, body)
	}
	return dst
}

// getFromNode GETs u from the node's network namespace.
func getFromNode(ctx context.Context, u string) (string, error) {
	body, _, err := nodeGet(ctx, u)
	return body, err
}

// nodeGet GETs u from the node's network namespace and returns the body
// and status.
func nodeGet(ctx context.Context, u string) (string, int, error) {
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: nodeTier.node.ns.dial}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

func annotationList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, strings.TrimPrefix(strings.TrimPrefix(k, "traffic.sidecar.istio.io/"), "sidecar.istio.io/")+"="+v)
	}
	if len(out) == 0 {
		out = []string{"(none)"}
	}
	return out
}

// startTarget runs a netcheck pod outside the mesh behind a Service
// "target" on 8080 and 9090: what the scenarios' pods call.
func startTarget(t *testing.T) (*corev1.Service, *corev1.Pod) {
	t.Helper()
	ns := namespace(t, "mesh-target", nil)
	pod := runNetcheck(t, ns, "target", nil)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "target"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "target"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}, {Name: "http-alt", Port: 9090, TargetPort: intstr.FromInt32(9090)},
		}},
	}
	svc, err := suite.client.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc, pod
}
