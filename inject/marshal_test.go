package inject

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestMarshalJSONMatchesStdlib: the engine's encoder writes exactly what
// encoding/json writes for the values it encodes into annotations and
// environment variables, including characters encoding/json escapes.
func TestMarshalJSONMatchesStdlib(t *testing.T) {
	t.Parallel()
	odd := "a<b>&c\u2028d\u2029e\"f\\g\x01h é 日本 \xff\xfe"
	values := map[string]any{
		"status":       Status{InitContainers: []string{"istio-init"}, Containers: []string{"istio-proxy", odd}, Revision: "default"},
		"empty status": Status{},
		"probers": map[string]*prober{
			"/app-health/web/livez":   {HTTPGet: &corev1.HTTPGetAction{Path: "/healthz?" + odd, Port: intstr.FromInt32(8080), Scheme: "HTTPS"}, TimeoutSeconds: 3},
			"/app-health/web/readyz":  {TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			"/app-health/db/startupz": {GRPC: &corev1.GRPCAction{Port: 9000}},
		},
		"ports":     []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {ContainerPort: 9090, HostIP: odd}},
		"record":    &record{Metadata: map[string]json.RawMessage{"labels": json.RawMessage(` {"a": "<b>"} `)}, Labels: &mapDiff{Added: []string{odd}, Changed: map[string]string{"k": odd}}},
		"overrides": overrides{Containers: []corev1.Container{{Name: "istio-proxy", Image: odd, Args: []string{"--x", odd}}}},
		"tree":      map[string]any{"z": []any{int64(1), 2.5, nil, true, odd}, "a": map[string]any{}},
	}
	for name, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: encoding/json: %v", name, err)
		}
		got, err := marshalJSON(v)
		if err != nil {
			t.Fatalf("%s: marshalJSON: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}
