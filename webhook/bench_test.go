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

// BenchmarkServeHTTP measures a review over HTTP without TLS (review
// decode, handler, response encode): through NewHTTPHandler, and through
// controller-runtime's Webhook.ServeHTTP as the baseline.
func BenchmarkServeHTTP(b *testing.B) {
	h, _ := newTestHandler(b, true)
	wh := NewWebhook(h)
	for _, s := range []struct {
		name    string
		handler http.Handler
	}{{"reviews", NewHTTPHandler(wh)}, {"controller-runtime", wh}} {
		for _, p := range benchpods.All() {
			body := []byte(review("v1", "Pod", string(p.JSON)))
			b.Run(s.name+"/"+p.Name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					s.handler.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatal(rec.Code)
					}
				}
			})
		}
	}
}
