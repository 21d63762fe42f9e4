package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshinject/meshinject/internal/benchpods"
)

// BenchmarkHandle measures one review through the handler: pod decode,
// injection, graft and patch.
func BenchmarkHandle(b *testing.B) {
	h, _ := newTestHandler(b, true)
	ctx := withPathParams(logf.IntoContext(b.Context(), logr.Discard()), "/inject")
	for _, p := range benchpods.All() {
		b.Run(p.Name, func(b *testing.B) {
			b.ReportAllocs()
			req := rawRequest(p.JSON)
			for b.Loop() {
				if resp := h.Handle(ctx, req); !resp.Allowed {
					b.Fatal(resp.Result)
				}
			}
		})
	}
}

// BenchmarkServeHTTP measures a review through controller-runtime's
// admission webhook (review decode, handler, response encode), without TLS.
func BenchmarkServeHTTP(b *testing.B) {
	h, _ := newTestHandler(b, true)
	wh := NewWebhook(h)
	for _, p := range benchpods.All() {
		body := []byte(review("v1", "Pod", string(p.JSON)))
		b.Run(p.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				wh.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
