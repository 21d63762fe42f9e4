package webhook

import (
	"net/http"
	"testing"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// FuzzHandle feeds arbitrary pod bytes and paths through the handler: no
// panic, no internal error (a 500: whatever the pod, it is injected,
// skipped, or refused naming what is wrong), and an allowed patch always
// applies to the request bytes.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(reviewPod), "/inject")
	f.Add([]byte(`{"metadata":{"annotations":{"sidecar.istio.io/proxyCPU":"1"}},"spec":{"containers":[{"name":"a","x":1}],"volumes":[{"name":"v","y":{}}]}}`), "/inject/net/n")
	f.Add([]byte(`{"spec":{"hostNetwork":true}}`), "/inject/a/b/c")
	if _, err := NewHandler(Options{Engines: nil}); err == nil {
		f.Fatal("NewHandler accepted no engine")
	}
	h, _ := newTestHandler(f, true)
	f.Fuzz(func(t *testing.T, raw []byte, path string) {
		req := rawRequest(raw)
		ctx := withPathParams(logf.IntoContext(t.Context(), logr.Discard()), path)
		resp := h.Handle(ctx, req)
		if r := resp.Result; r != nil && r.Code >= http.StatusInternalServerError && r.Code != http.StatusServiceUnavailable {
			t.Fatalf("internal error %d: %s", r.Code, r.Message)
		}
		if !resp.Allowed || len(resp.Patch) == 0 {
			return
		}
		if _, err := applyPatch(raw, resp); err != nil {
			t.Fatalf("patch does not apply: %v", err)
		}
	})
}
