package inject

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/hack/benchpods"
	"github.com/meshinject/meshinject/internal/config"
)

var benchPods = benchpods.All()

// floor decodes the pod JSON and encodes it again.
func floor(b *testing.B, podJSON []byte) {
	var p corev1.Pod
	if err := json.Unmarshal(podJSON, &p); err != nil {
		b.Fatal(err)
	}
	if _, err := json.Marshal(&p); err != nil {
		b.Fatal(err)
	}
}

// injectJSON decodes the pod JSON, injects it and encodes the result.
func injectJSON(b *testing.B, e *Engine, podJSON []byte) {
	var p corev1.Pod
	if err := json.Unmarshal(podJSON, &p); err != nil {
		b.Fatal(err)
	}
	res, err := e.Inject(Request{Pod: &p, Namespace: "shop"})
	if err != nil || res.Skipped {
		b.Fatal(err, res.Reason)
	}
	if _, err := json.Marshal(res.Pod); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFloor only decodes the pod JSON and encodes it again: the
// least any admission of this pod costs.
func BenchmarkFloor(b *testing.B) {
	for _, bp := range benchPods {
		b.Run(bp.Name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.JSON)))
			for b.Loop() {
				floor(b, bp.JSON)
			}
		})
	}
}

// BenchmarkInject decodes the pod JSON, injects it and encodes the result:
// the floor's work plus the engine's. Replicas of one workload render
// identically, so after the first iteration templates come from the render
// cache; BenchmarkInjectUncached measures every render parsed afresh.
func BenchmarkInject(b *testing.B) {
	benchInject(b, 0)
}

// BenchmarkInjectUncached is BenchmarkInject with the render cache off.
func BenchmarkInjectUncached(b *testing.B) {
	benchInject(b, -1)
}

func benchInject(b *testing.B, cacheSize int) {
	e, err := New(Options{Config: mustConfig(b, config.Sources{}), RenderCacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range benchPods {
		b.Run(bp.Name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.JSON)))
			for b.Loop() {
				injectJSON(b, e, bp.JSON)
			}
		})
	}
}

// BenchmarkVsFloor alternates the floor (decode + encode) and a full
// injection (decode + inject + encode) of the same pod within every
// iteration, so both see the same machine state, and reports each one's
// time per op and their ratio (x-floor).
func BenchmarkVsFloor(b *testing.B) {
	e, err := New(Options{Config: mustConfig(b, config.Sources{})})
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range benchPods {
		b.Run(bp.Name, func(b *testing.B) {
			var floorTime, injectTime time.Duration
			for b.Loop() {
				t0 := time.Now()
				floor(b, bp.JSON)
				t1 := time.Now()
				injectJSON(b, e, bp.JSON)
				floorTime += t1.Sub(t0)
				injectTime += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(floorTime.Nanoseconds())/n, "floor-ns/op")
			b.ReportMetric(float64(injectTime.Nanoseconds())/n, "inject-ns/op")
			b.ReportMetric(float64(injectTime)/float64(floorTime), "x-floor")
		})
	}
}
