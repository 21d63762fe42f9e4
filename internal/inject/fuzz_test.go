package inject

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/test/testutil"
)

// goldenPods returns the JSON of every pod in the corpus, as seeds.
func goldenPods(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, dir := range corpusDirs {
		for _, c := range testutil.ManifestCases(f, dir) {
			b, err := os.ReadFile(c.Path)
			if err != nil {
				f.Fatal(err)
			}
			docs, err := testutil.ParseManifest(b)
			if err != nil {
				continue // a syntax error case
			}
			for _, d := range docs {
				_ = eachPod(d, func(pod map[string]any, _ *Workload, _ string, _ func(map[string]any)) error {
					if j, err := json.Marshal(pod); err == nil {
						out = append(out, j)
					}
					return nil
				})
			}
		}
	}
	return out
}

// FuzzInject feeds arbitrary pods (seeded from the corpus) to the engine:
// it must never panic nor fail but with its typed refusal (*Error), and an injected pod must encode, decode, re-inject
// to the same pod (byte for byte) and uninject to the pod it was (to the
// pod without injection, when it was injected before).
func FuzzInject(f *testing.F) {
	for _, p := range goldenPods(f) {
		f.Add(p, false)
	}
	e := mustEngine(f, config.Sources{})
	f.Fuzz(func(t *testing.T, podJSON []byte, native bool) {
		var pod corev1.Pod
		if err := json.Unmarshal(podJSON, &pod); err != nil {
			t.Skip()
		}
		if _, err := json.Marshal(&pod); err != nil {
			t.Skip() // not a pod any API server holds
		}
		original := pod.DeepCopy()
		if _, ok := original.Annotations[AnnotationStatus]; ok {
			// Injected before: uninject leaves it with no injection.
			if err := Uninject(original); err != nil {
				t.Skip()
			}
		}
		res, err := e.Inject(Request{Pod: &pod, NativeSidecars: native, ForcePolicy: true})
		var refused *Error
		if err != nil && !errors.As(err, &refused) {
			t.Fatalf("an internal error (not the engine's *Error refusal): %v", err)
		}
		if err != nil || res.Skipped {
			return
		}
		out, err := json.Marshal(res.Pod)
		if err != nil {
			t.Fatalf("injected pod does not encode: %v", err)
		}
		var again corev1.Pod
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("injected pod does not decode: %v", err)
		}
		res2, err := e.Inject(Request{Pod: &again, NativeSidecars: native, ForcePolicy: true})
		if err != nil {
			t.Fatalf("re-injection failed: %v", err)
		}
		if out2, _ := json.Marshal(res2.Pod); string(out2) != string(out) {
			t.Fatalf("re-injection changed the injected pod\nonce  %s\ntwice %s", out, out2)
		}
		if err := Uninject(res.Pod); err != nil {
			t.Fatalf("uninject failed: %v", err)
		}
		// Semantically: an empty list is the same as none.
		if !apiequality.Semantic.DeepEqual(res.Pod, original) {
			want, _ := json.Marshal(original)
			got, _ := json.Marshal(res.Pod)
			t.Fatalf("uninject(inject(pod)) is not the pod\nwant %s\ngot  %s", want, got)
		}
	})
}

// fuzzAnnotations are the annotations that change injection output:
// annotationTable's, and Prometheus' scrape annotations.
var fuzzAnnotations = func() []string {
	var names []string
	for _, r := range annotationTable {
		names = append(names, r.Name)
	}
	return append(names, "prometheus.io/port", "prometheus.io.scrape")
}()

// FuzzAnnotations sets arbitrary values on two injection annotations of a
// pod with probes: injection either fails with an *Error naming one of
// them, or succeeds and uninjects back to the pod.
func FuzzAnnotations(f *testing.F) {
	at := func(name string) uint8 { return uint8(slices.Index(fuzzAnnotations, name)) }
	f.Add(at("sidecar.istio.io/proxyCPU"), "100m", at("sidecar.istio.io/interceptionMode"), "TPROXY")
	f.Add(at("proxy.istio.io/config"), "holdApplicationUntilProxyStarts: true", at("sidecar.istio.io/userVolume"), `{"v":{"emptyDir":{}}}`)
	f.Add(at("inject.istio.io/templates"), "gateway,sidecar", at("status.sidecar.istio.io/port"), "0")
	e := mustEngine(f, config.Sources{})
	f.Fuzz(func(t *testing.T, k1 uint8, v1 string, k2 uint8, v2 string) {
		if !utf8.ValidString(v1) || !utf8.ValidString(v2) {
			t.Skip("pods arrive as JSON, which cannot carry invalid UTF-8")
		}
		a1 := fuzzAnnotations[int(k1)%len(fuzzAnnotations)]
		a2 := fuzzAnnotations[int(k2)%len(fuzzAnnotations)]
		mk := func() *corev1.Pod {
			p := testPod("fuzz", withAnnotation(a1, v1), withAnnotation(a2, v2))
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}}
			return p
		}
		pod := mk()
		res, err := e.Inject(Request{Pod: pod})
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("a refusal that is not an *inject.Error (it must name the annotation and value): %v", err)
			}
			if ie.Field != a1 && ie.Field != a2 {
				t.Fatalf("error names %s, want %s or %s: %v", ie.Field, a1, a2, err)
			}
			return
		}
		if res.Skipped {
			return
		}
		if err := Uninject(res.Pod); err != nil {
			t.Fatalf("uninject: %v", err)
		}
		want, _ := json.Marshal(mk())
		got, _ := json.Marshal(res.Pod)
		if string(want) != string(got) {
			t.Fatalf("uninject(inject(x)) != x\nwant %s\ngot  %s", want, got)
		}
	})
}
