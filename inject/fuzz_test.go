package inject

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/config"
	"github.com/meshinject/meshinject/manifest"
)

// goldenPods returns the JSON of every pod in the golden inputs, as seeds.
func goldenPods(f *testing.F) [][]byte {
	f.Helper()
	paths, err := filepath.Glob("../internal/cli/testdata/inject/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		_, _ = manifest.Transform(b, func(_ manifest.Object, pod *corev1.Pod) (bool, error) {
			if j, err := json.Marshal(pod); err == nil {
				out = append(out, j)
			}
			return false, nil
		})
	}
	return out
}

// FuzzInject feeds arbitrary pods (seeded from the goldens) to the engine:
// it must never panic, and an injected pod must encode, decode, re-inject
// to the same pod and uninject cleanly.
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
		res, err := e.Inject(Request{Pod: &pod, NativeSidecars: native, ForcePolicy: true})
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
		if _, err := e.Inject(Request{Pod: &again, NativeSidecars: native, ForcePolicy: true}); err != nil {
			t.Fatalf("re-injection failed: %v", err)
		}
		if err := Uninject(res.Pod); err != nil {
			t.Fatalf("uninject failed: %v", err)
		}
	})
}
