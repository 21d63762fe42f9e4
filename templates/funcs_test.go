package templates

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIstioFunctions renders each Istio-named function the way Istio's
// templates call it.
func TestIstioFunctions(t *testing.T) {
	t.Parallel()
	data := map[string]any{
		"ObjectMeta":  metav1.ObjectMeta{Annotations: map[string]string{"a": "x", "k8s.v1.cni.cncf.io/networks": `[{"name":"n1"}]`}},
		"Containers":  []corev1.Container{{Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 443, Protocol: corev1.ProtocolTCP}}}},
		"PC":          &meshv1alpha1.ProxyConfig{StatusPort: 15020, DiscoveryAddress: "custom:15012"},
		"Defaults":    &meshv1alpha1.ProxyConfig{StatusPort: 15020},
		"Empty":       map[string]string{},
		"Nil":         map[string]string(nil),
		"NilDuration": (*durationpb.Duration)(nil),
		"Named": []corev1.Container{
			{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 80}}},
			{Name: "istio-proxy", Ports: []corev1.ContainerPort{{ContainerPort: 15090}}},
		},
	}
	tests := map[string]string{
		`{{ annotation .ObjectMeta "a" "d" }}`:                "x",
		`{{ annotation .ObjectMeta "b" 15020 }}`:              "15020",
		`{{ isset .ObjectMeta.Annotations "a" }}`:             "true",
		`{{ valueOrDefault "" "d" }}`:                         "d",
		`{{ valueOrDefault .Empty "d" }}`:                     "map[]",
		`{{ valueOrDefault 0 "d" }}`:                          "0",
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
		`{{ appendMultusNetwork (index .ObjectMeta.Annotations "k8s.v1.cni.cncf.io/networks") "istio-cni" }}`:         `[{"name":"n1"}, {"name": "istio-cni"}]`,
		`{{ appendMultusNetwork (index .ObjectMeta.Annotations "k8s.v1.cni.cncf.io/networks") "default/istio-cni" }}`: `[{"name":"n1"}, {"name": "istio-cni", "namespace": "default"}]`,
		`{{ appendMultusNetwork "a, default/istio-cni" "default/istio-cni" }}`:                                        "a, default/istio-cni",
		`{{ appendMultusNetwork "[{\"name\":\"istio-cni\",\"namespace\":\"default\"}]" "default/istio-cni" }}`:        `[{"name":"istio-cni","namespace":"default"}]`,
		`{{ toYaml (strdict "a" "1") }}`:           "a: \"1\"\n",
		`{{ toJSON .Nil }}`:                        "{}",
		`{{ fromJSON "not json" }}`:                "{}",
		`{{ toJSON (strdict "a") }}`:               `{"a":""}`,
		`{{ directory "/etc/certs/ca.pem" }}`:      "/etc/certs/",
		`{{ directory "ca.pem" }}`:                 "",
		`{{ applicationPorts .Named }}`:            "80",
		`{{ includeInboundPorts .Named }}`:         "80,15090",
		`{{ kubevirtInterfaces "net1" }}`:          "net1",
		`{{ excludeInterfaces "eth1" }}`:           "eth1",
		`{{ excludeInboundPort 15020 " 1, 2,," }}`: "1,2,15020",
		`{{ formatDuration .NilDuration }}`:        "0s",
		`{{ env "MESHINJECT_TEST_UNSET" "d" }}`:    "d",
		`{{ toJSON (omitNil (fromJSON "{\"a\":null,\"b\":[1,null],\"c\":{\"d\":null}}")) }}`: `{"b":[1]}`,
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

func TestOtelResourceAttributes(t *testing.T) {
	t.Parallel()
	otel := &meshv1alpha1.MeshConfig{ExtensionProviders: []*meshv1alpha1.MeshConfig_ExtensionProvider{{
		Name: "otel",
		Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Opentelemetry{Opentelemetry: &meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{
			ServiceAttributeEnrichment: meshv1alpha1.MeshConfig_ExtensionProvider_OTEL_SEMANTIC_CONVENTIONS,
		}},
	}}}
	one := []corev1.Container{{Name: "app", Image: "registry:5000/shop/app:1.2@sha256:ab"}}
	tests := []struct {
		name        string
		mesh        *meshv1alpha1.MeshConfig
		annotations map[string]string
		labels      map[string]string
		containers  []corev1.Container
		want        string
	}{
		{"no enrichment", &meshv1alpha1.MeshConfig{}, nil, nil, one, ""},
		{"image tag and digest", otel, nil, nil, one, "service.namespace=shop,service.version=1.2@sha256:ab,service.instance.id=shop.$(POD_NAME).app"},
		{"version label", otel, nil, map[string]string{"app.kubernetes.io/version": "v3"}, one, "service.namespace=shop,service.version=v3,service.instance.id=shop.$(POD_NAME).app"},
		{"annotations win", otel, map[string]string{
			"resource.opentelemetry.io/service.namespace":   "ns",
			"resource.opentelemetry.io/service.version":     "v9",
			"resource.opentelemetry.io/service.instance.id": "id",
		}, nil, one, "service.namespace=ns,service.version=v9,service.instance.id=id"},
		{"two containers, no version", otel, nil, nil, append(one, corev1.Container{Name: "b"}), "service.namespace=shop,service.instance.id=shop.$(POD_NAME).app"},
	}
	for _, tt := range tests {
		if got := OtelResourceAttributes(tt.mesh, tt.annotations, tt.labels, "shop", tt.containers); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
