package manifest

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzTransform feeds arbitrary manifest streams (seeded from the goldens)
// to the reader: it must never panic, and what it writes must split and
// transform again.
func FuzzTransform(f *testing.F) {
	paths, err := filepath.Glob("../../../../internal/inject/testdata/inject/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"List","items":[{"kind":"Pod","spec":{}}]}`))
	touch := func(_ Object, pod *corev1.Pod) (bool, error) {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations["fuzz"] = "1"
		return true, nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Transform(data, touch)
		if err != nil {
			return
		}
		if _, err := Transform(out, touch); err != nil {
			t.Fatalf("output does not read back: %v\ninput:\n%s\noutput:\n%s", err, data, out)
		}
	})
}
