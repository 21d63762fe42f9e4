package webhook

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestRequestLogger: every line logged for a request carries its identity
// and the caller's file, values added later included, and nothing is
// written for lines below the level.
func TestRequestLogger(t *testing.T) {
	var buf bytes.Buffer
	enc := zap.NewProductionEncoderConfig()
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(&buf), zapcore.InfoLevel)
	base := zapr.NewLogger(zap.New(core, zap.AddCaller()))
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u-7", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "shop", Name: "web",
		Operation: admissionv1.Create, UserInfo: authv1.UserInfo{Username: "alice"},
	}}
	log := requestLogger(base, req).WithValues("pod", "shop/web")
	log.V(1).Info("not written")
	log.Info("injected", "templates", []string{"sidecar"})
	log.Error(nil, "refused")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]any{"uid": "u-7", "namespace": "shop", "name": "web", "kind": "Pod", "operation": "CREATE", "user": "alice", "pod": "shop/web"} {
			if m[k] != v {
				t.Errorf("line %s: %s = %v, want %v", l, k, m[k], v)
			}
		}
		if c, _ := m["caller"].(string); !strings.HasPrefix(c, "webhook/logger_test.go") {
			t.Errorf("line %s: caller %q, want this test file", l, c)
		}
	}
}
