package templates

import (
	"strings"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIstioFunctions renders each Istio-named function the way Istio's
// templates call it.
func TestIstioFunctions(t *testing.T) {
	t.Parallel()
	data := map[string]any{
		"ObjectMeta": metav1.ObjectMeta{Annotations: map[string]string{"a": "x", "k8s.v1.cni.cncf.io/networks": `[{"name":"n1"}]`}},
		"Containers": []corev1.Container{{Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 443, Protocol: corev1.ProtocolTCP}}}},
		"PC":         &meshv1alpha1.ProxyConfig{StatusPort: 15020, DiscoveryAddress: "custom:15012"},
		"Defaults":   &meshv1alpha1.ProxyConfig{StatusPort: 15020},
		"Empty":      map[string]string{},
	}
	tests := map[string]string{
		`{{ annotation .ObjectMeta "a" "d" }}`:                "x",
		`{{ annotation .ObjectMeta "b" 15020 }}`:              "15020",
		`{{ isset .ObjectMeta.Annotations "a" }}`:             "true",
		`{{ valueOrDefault "" "d" }}`:                         "d",
		`{{ valueOrDefault .Empty "d" }}`:                     "d",
		`{{ excludeInboundPort 15020 "" }}`:                   "15020",
		`{{ excludeInboundPort "15020" "80,15020" }}`:         "80,15020",
		`{{ excludeInboundPort 0 "80" }}`:                     "80",
		`{{ includeInboundPorts .Containers }}`:               "80,443",
		`{{ toJSON (strdict "b" "2" "a" "1") }}`:              `{"a":"1","b":"2"}`,
		`{{ (fromJSON "{\"k\":1}").k }}`:                      "1",
		`{{ protoToJSON .PC }}`:                               `{"discoveryAddress":"custom:15012","statusPort":15020}`,
		`{{ indent 2 "a\nb" }}`:                               "a\n  b",
		`{{ contains "ell" "hello" }}`:                        "true",
		`{{ toLower "ABC" }}`:                                 "abc",
		`{{ toJsonMap (strdict "a" "1") (strdict "a" "2") }}`: `{"a":"2"}`,
		`{{ appendMultusNetwork "" "istio-cni" }}`:            "istio-cni",
		`{{ appendMultusNetwork "a, b" "istio-cni" }}`:        "a, b, istio-cni",
		`{{ appendMultusNetwork (index .ObjectMeta.Annotations "k8s.v1.cni.cncf.io/networks") "istio-cni" }}`: `[{"name":"n1"},{"name":"istio-cni"}]`,
		`{{ toYaml (strdict "a" "1") }}`: "a: \"1\"",
	}
	for text, want := range tests {
		t.Run(text, func(t *testing.T) {
			t.Parallel()
			tmpl, err := Compile("t", text, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := tmpl.Execute(&b, data); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Errorf("%s = %q, want %q", text, b.String(), want)
			}
		})
	}
	tmpl, err := Compile("t", `{{ protoToJSON .PC }}`, Options{ProxyConfigDefaults: data["Defaults"].(*meshv1alpha1.ProxyConfig)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if b.String() != `{"discoveryAddress":"custom:15012"}` {
		t.Errorf("protoToJSON with defaults = %s", b.String())
	}
}

func TestBuiltinTemplatesCompile(t *testing.T) {
	t.Parallel()
	b := Builtin()
	for _, n := range []string{"sidecar", "gateway", "grpc-agent", "grpc-simple"} {
		if _, err := Compile(n, b[n], Options{}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
