package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshinject/meshinject/hack/benchpods"
	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/podcodec"
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
	}{{"reviews", NewHTTPHandler(wh, HTTPOptions{})}, {"controller-runtime", wh}} {
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

// BenchmarkPatch measures the JSON patch between each bench pod and its
// injected encoding.
func BenchmarkPatch(b *testing.B) {
	h, _ := newTestHandler(b, true)
	for _, p := range benchpods.All() {
		current, _, err := podcodec.RoundTrip(p.JSON, podcodec.Options{}, func(pod *corev1.Pod) (bool, error) {
			res, err := h.opts.Engines.Engine().Inject(inject.Request{Pod: pod, Namespace: "shop", NativeSidecars: true})
			if err == nil {
				*pod = *res.Pod
			}
			return true, err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(p.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := patchResponse(p.JSON, current); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHostile measures a review of the largest pod of each hostile
// kind under the pod size limit through the HTTP handler, and reports the
// allocation per byte of pod beside -benchmem's figures.
func BenchmarkHostile(b *testing.B) {
	h, _ := newTestHandler(b, false)
	srv := NewHTTPHandler(NewWebhook(h), HTTPOptions{})
	for name, build := range benchpods.Hostile() {
		pod := benchpods.LargestUnder(build, DefaultMaxPodBytes)
		body := []byte(review("v1", "Pod", string(pod)))
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				srv.ServeHTTP(&sink{header: http.Header{}}, req)
			}
			b.ReportMetric(float64(len(pod)), "pod-bytes")
		})
	}
}
