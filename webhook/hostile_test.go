package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meshinject/meshinject/hack/benchpods"
)

// hostilePods build pods that grow one dimension to n: what anyone who may
// create a pod can send. Each must cost work linear in n.
var hostilePods = benchpods.Hostile()

// reviewCost handles one review of raw and returns the bytes it allocated
// and the time it took.
func reviewCost(t *testing.T, h *Handler, raw []byte) (uint64, time.Duration) {
	t.Helper()
	req := rawRequest(raw)
	var before, after runtime.MemStats
	coldPools()
	runtime.ReadMemStats(&before)
	start := time.Now()
	resp := h.Handle(context.Background(), req)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if !resp.Allowed {
		t.Fatalf("review refused: %v", resp.Result)
	}
	return after.TotalAlloc - before.TotalAlloc, took
}

// coldPools empties the sync.Pools (a collection moves them to a victim
// cache, the next drops it), so each review is measured at its cost with
// no buffer left by the one before: the figures are the worst case and
// do not jump with the pools' state.
func coldPools() {
	runtime.GC()
	runtime.GC()
}

// steadyCost is reviewCost in the steady state: the mean of four reviews
// (buffer pools make single figures jump) after one that warms the render
// cache, and the slowest of them.
func steadyCost(t *testing.T, h *Handler, raw []byte) (uint64, time.Duration) {
	t.Helper()
	reviewCost(t, h, raw)
	var total uint64
	var slowest time.Duration
	for range 4 {
		a, d := reviewCost(t, h, raw)
		total += a
		slowest = max(slowest, d)
	}
	return total / 4, slowest
}

// maxAllocPerByte bounds a review's allocation per byte of pod: today's
// worst (annotations) with some room, so a regression fails.
const maxAllocPerByte = 64

// TestHostilePodsLinear: for each hostile pod, doubling its size at most
// doubles (×2.3) the bytes a review allocates, the allocation per byte of
// pod stays under maxAllocPerByte, and the larger review takes under 1 s
// (10 s with the race detector). The larger sizes stay under
// DefaultMaxPodBytes.
func TestHostilePodsLinear(t *testing.T) {
	h, _ := newTestHandler(t, false)
	sizes := map[string]int{"labels": 28000, "annotations": 28000, "probed containers": 2000, "template names": 5000, "env entries": 12000, "deep JSON": 4000}
	for name, build := range hostilePods {
		t.Run(name, func(t *testing.T) {
			n := sizes[name]
			a1, _ := steadyCost(t, h, build(n))
			big := build(2 * n)
			if len(big) > DefaultMaxPodBytes {
				t.Fatalf("%d KiB: over the pod limit; make the size smaller", len(big)>>10)
			}
			a2, took := steadyCost(t, h, big)
			ratio := float64(a2) / float64(a1)
			perByte := float64(a2) / float64(len(big))
			t.Logf("%s: %d → %d: %.1f MiB → %.1f MiB (×%.2f), %.0f B allocated per byte, %v for %d KiB", name, n, 2*n,
				float64(a1)/(1<<20), float64(a2)/(1<<20), ratio, perByte, took, len(big)>>10)
			// 4 MiB of slack for the steps of buffer growth and the
			// refill of the buffer pools (a collection empties them;
			// buffers over 1 MiB are not pooled); a quadratic step is far
			// outside it at these sizes.
			if raceEnabled {
				// The race detector's own allocations blur the figures;
				// make test runs this test without it too.
				a1, a2 = 0, 0
			}
			if float64(a2) > 2.3*float64(a1)+(4<<20) {
				t.Errorf("allocation grows ×%.2f for ×2 the size, want at most ×2.3", ratio)
			}
			// Below 64 KiB a review's fixed cost dominates.
			if !raceEnabled && len(big) > 64<<10 && perByte > maxAllocPerByte {
				t.Errorf("a review of %d KiB allocated %.0f bytes per input byte, want at most %d", len(big)>>10, perByte, maxAllocPerByte)
			}
			limit := time.Second
			if raceEnabled {
				limit = 10 * time.Second // the race detector's slowdown
			}
			if took > limit {
				t.Errorf("a review of %d KiB took %v, want under %v", len(big)>>10, took, limit)
			}
		})
	}
}

// sink is a ResponseWriter into a buffer grown before the measurement,
// so the allocations counted are the server's, not a recorder's.
type sink struct {
	header http.Header
	body   bytes.Buffer
}

func (s *sink) Header() http.Header         { return s.header }
func (s *sink) Write(b []byte) (int, error) { return s.body.Write(b) }
func (s *sink) WriteHeader(int)             {}

// serveCost sends one review of pod through the HTTP handler (body read,
// review decode, Handle, response encode) and returns the bytes allocated,
// the time taken and the response.
func serveCost(t *testing.T, srv http.Handler, pod []byte) (uint64, time.Duration, reviewResponse) {
	t.Helper()
	body := []byte(review("v1", "Pod", string(pod)))
	req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := &sink{header: http.Header{}}
	w.body.Grow(4*len(pod) + 1<<20)
	var before, after runtime.MemStats
	coldPools()
	runtime.ReadMemStats(&before)
	start := time.Now()
	srv.ServeHTTP(w, req)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	var rr reviewResponse
	if err := json.Unmarshal(w.body.Bytes(), &rr); err != nil {
		t.Fatalf("response: %v", err)
	}
	return after.TotalAlloc - before.TotalAlloc, took, rr
}

// TestHostilePodsBudget: the largest pod of each hostile kind that is
// injected, and a pod that fills the 7 MiB body cap (refused as too
// large), each cost under 64 MiB of allocation and 1 s through the HTTP
// handler.
func TestHostilePodsBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's allocations blur the figures; make test runs this without it")
	}
	h, _ := newTestHandler(t, false)
	srv := NewHTTPHandler(NewWebhook(h), HTTPOptions{})
	const budget = 64 << 20
	check := func(t *testing.T, pod []byte, injected bool) {
		serveCost(t, srv, pod) // warm the render cache
		alloc, took, rr := serveCost(t, srv, pod)
		t.Logf("%s: %d KiB: %.1f MiB allocated, %v", t.Name(), len(pod)>>10, float64(alloc)/(1<<20), took)
		if rr.Response.Allowed != injected {
			t.Fatalf("allowed %v, want %v: %+v", rr.Response.Allowed, injected, rr.Response.Status)
		}
		if alloc > budget {
			t.Errorf("a review of a %d KiB pod allocated %.1f MiB, want under 64 MiB", len(pod)>>10, float64(alloc)/(1<<20))
		}
		if took > time.Second {
			t.Errorf("a review of a %d KiB pod took %v, want under 1s", len(pod)>>10, took)
		}
	}
	for name, build := range hostilePods {
		t.Run(name, func(t *testing.T) {
			check(t, benchpods.LargestUnder(build, DefaultMaxPodBytes), name != "deep JSON")
		})
	}
	t.Run("7 MiB body", func(t *testing.T) {
		pod := benchpods.LargestUnder(hostilePods["labels"], maxReviewBytes-4096)
		check(t, pod, false)
		_, _, rr := serveCost(t, srv, pod)
		if rr.Response.Status == nil || !strings.Contains(rr.Response.Status.Message, "meshinject injects pods of up to 768 KiB (serve --max-pod-bytes)") {
			t.Errorf("refusal %+v does not say the limit", rr.Response.Status)
		}
	})
}
