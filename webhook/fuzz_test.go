package webhook

import (
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// FuzzHandle feeds arbitrary pod bytes and paths through the handler: no
// panic, and an allowed patch always applies to the request bytes.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(reviewPod), "/inject")
	f.Add([]byte(`{"metadata":{"annotations":{"sidecar.istio.io/proxyCPU":"1"}},"spec":{"containers":[{"name":"a","x":1}],"volumes":[{"name":"v","y":{}}]}}`), "/inject/net/n")
	f.Add([]byte(`{"spec":{"hostNetwork":true}}`), "/inject/a/b/c")
	if _, err := NewHandler(Options{Engines: nil}); err == nil {
		f.Fatal("NewHandler accepted no engine")
	}
	h, _ := newTestHandler(&testing.T{}, true)
	f.Fuzz(func(t *testing.T, raw []byte, path string) {
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "ns",
			Object: runtime.RawExtension{Raw: raw},
		}}
		ctx := withPathParams(logf.IntoContext(t.Context(), logr.Discard()), path)
		resp := h.Handle(ctx, req)
		if !resp.Allowed || len(resp.Patches) == 0 {
			return
		}
		if _, err := applyPatch(raw, resp); err != nil {
			t.Fatalf("patch does not apply: %v", err)
		}
	})
}
