//go:build node

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// testMeshGateway: examples/gateway.yaml as it is (the istio-proxy
// container's image "auto", inject.istio.io/templates: gateway, the pod
// opted in by its label in an unlabelled namespace) runs with the proxyv2
// image built here, pulled from the node's registry, Ready, its agent in router mode holding a certificate
// for the gateway's ServiceAccount; an Istio Gateway for port 80 reaches
// its proxy as istiod's listener 0.0.0.0_80. (The stand-in does not
// route: requests to the gateway's port 80 are not served.)
func testMeshGateway(t *testing.T) {
	namespaceNamed(t, "istio-ingress", nil)
	mustKubectl(t, "apply", "-f", filepath.Join(suite.repo, "examples/gateway.yaml"))
	rollout(t, "istio-ingress", "istio-ingressgateway")
	pod := podsOf(t, "istio-ingress", "istio=ingressgateway", 1)[0]
	proxy := find(pod.Spec.Containers, "istio-proxy")
	if proxy == nil || proxy.Image != meshProxyImage {
		t.Fatalf("gateway pod's istio-proxy: %+v, want image %s", proxy, meshProxyImage)
	}
	// image: auto defaulted the pull policy to Always: the kubelet pulled
	// the image from the node's registry.
	if proxy.ImagePullPolicy != "Always" {
		t.Errorf("gateway's istio-proxy pull policy %q, want Always (defaulted for image auto)", proxy.ImagePullPolicy)
	}
	eventually(t, wait, "the gateway's image pulled", func() error {
		evs, err := suite.client.CoreV1().Events("istio-ingress").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name + ",reason=Pulled"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, "Successfully pulled image \""+meshProxyImage+"\"") {
				return nil
			}
		}
		return fmt.Errorf("no Pulled event for %s among %d", meshProxyImage, len(evs.Items))
	})
	if !slices.Contains(proxy.Args, "router") {
		t.Errorf("gateway's agent args %v, want router mode", proxy.Args)
	}
	if got, want := workloadSPIFFE(t, "istio-ingress", pod.Name), "spiffe://cluster.local/ns/istio-ingress/sa/istio-ingressgateway"; got != want {
		t.Errorf("gateway's workload certificate names %q, want %q", got, want)
	}
	gw := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin
  namespace: istio-ingress
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`
	applyStdin(t, gw)
	eventually(t, wait, "istiod's listener for the Gateway on the gateway's proxy", func() error {
		recs, err := standinRecords(t, "istio-ingress", pod.Name)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Kind == "xds" && slices.Contains(r.Listeners, "0.0.0.0_80") {
				return nil
			}
		}
		return fmt.Errorf("no listener 0.0.0.0_80 pushed yet")
	})
}

// testMeshTrafficManagement: examples/traffic-management.yaml's app-v1 and
// app-v2 behind the Service "app", and its testclient, in an enabled
// namespace, with netcheck in place of the images the example names
// (hashicorp/http-echo and curlimages/curl, which cannot be had here).
// Every pod is Ready and injected, and requests from testclient to the
// Service, captured by testclient's proxy, reach both versions.
func testMeshTrafficManagement(t *testing.T) {
	ns := namespace(t, "mesh-traffic", map[string]string{"istio-injection": "enabled"})
	applyStdin(t, withNetcheck(t, filepath.Join(suite.repo, "examples/traffic-management.yaml")), "-n", ns)
	for _, d := range []string{"app-v1", "app-v2", "testclient"} {
		rollout(t, ns, d)
	}
	for _, sel := range []string{"app=app", "app=testclient"} {
		for _, p := range podsOf(t, ns, sel, map[string]int{"app=app": 2, "app=testclient": 1}[sel]) {
			assertSidecarImage(t, &p, true, "default", meshProxyImage)
		}
	}
	client := podsOf(t, ns, "app=testclient", 1)[0]
	seen := map[string]bool{}
	eventually(t, wait, "both versions through the Service", func() error {
		body := fetch(t, &client, fmt.Sprintf("http://app.%s.svc/", ns))
		seen[strings.Fields(body)[1]] = true
		if len(seen) < 2 {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})
	svc, err := suite.client.CoreV1().Services(ns).Get(t.Context(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertCaptured(t, ns, client.Name, "outbound", svc.Spec.ClusterIP+":80", true)
}

// withNetcheck returns the manifest with every Deployment's containers
// running netcheck serve 8080 instead of their images.
func withNetcheck(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if obj == nil {
			continue
		}
		if obj["kind"] == "Deployment" {
			b, _ := sigsyaml.Marshal(obj)
			var d appsv1.Deployment
			if err := sigsyaml.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			for i := range d.Spec.Template.Spec.Containers {
				c := &d.Spec.Template.Spec.Containers[i]
				c.Image, c.Command, c.Args, c.Env = netcheckImage, nil, []string{"serve", "8080"}, nil
			}
			b, _ = sigsyaml.Marshal(&d)
			out = append(out, string(b))
			continue
		}
		b, _ := sigsyaml.Marshal(obj)
		out = append(out, string(b))
	}
	return strings.Join(out, "---\n")
}

// applyStdin applies a manifest with kubectl.
func applyStdin(t *testing.T, manifest string, args ...string) {
	t.Helper()
	cmd := command(t.Context(), suite.kubectl, append([]string{"--kubeconfig=" + suite.kubeconfig, "apply", "-f", "-"}, args...)...)
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, manifest)
	}
}
