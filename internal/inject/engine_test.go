package inject

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject/podmerge"
)

func TestInjectBasics(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	res, err := e.Inject(Request{Pod: testPod("web")})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Pod
	if got := containerNames(p.Spec.InitContainers); !reflect.DeepEqual(got, []string{"istio-init"}) {
		t.Errorf("init containers = %v", got)
	}
	if got := containerNames(p.Spec.Containers); !reflect.DeepEqual(got, []string{"app", "istio-proxy"}) {
		t.Errorf("containers = %v", got)
	}
	var st Status
	if err := json.Unmarshal([]byte(p.Annotations[AnnotationStatus]), &st); err != nil {
		t.Fatal(err)
	}
	if st.Revision != "default" || len(st.Volumes) != 9 || st.ImagePullSecrets != nil {
		t.Errorf("status = %+v", st)
	}
	if !reflect.DeepEqual(res.Templates, []string{"sidecar"}) {
		t.Errorf("templates = %v", res.Templates)
	}
}

func TestInjectErrorsNameTheAnnotation(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	tests := map[string]string{
		"sidecar.istio.io/proxyCPU":                        "fast",
		"sidecar.istio.io/interceptionMode":                "MAGIC",
		"traffic.sidecar.istio.io/includeInboundPorts":     "http",
		"traffic.sidecar.istio.io/excludeOutboundIPRanges": "*",
		"status.sidecar.istio.io/port":                     "-1",
		"sidecar.istio.io/proxyImageType":                  "tiny",
		"proxy.istio.io/config":                            "statusPort: [",
		"inject.istio.io/templates":                        "nosuch",
		"sidecar.istio.io/userVolumeMount":                 `{"x":{}}`,
	}
	for ann, val := range tests {
		t.Run(ann, func(t *testing.T) {
			t.Parallel()
			_, err := e.Inject(Request{Pod: testPod("bad", withAnnotation(ann, val))})
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if ie.Field != ann || ie.Value != val || !strings.Contains(err.Error(), ann) {
				t.Errorf("err = %v, want it to name %s=%q", err, ann, val)
			}
		})
	}
}

// TestRenderCacheIsolation injects the same pod twice through one engine:
// the second render is served from the cache and must not see the first
// injection's mutations.
func TestRenderCacheIsolation(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	first, err := e.Inject(Request{Pod: testPod("web")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.Inject(Request{Pod: testPod("web")})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first.Pod, second.Pod) {
		t.Error("second injection differs from the first")
	}
	if e.cache.lru.Len() == 0 {
		t.Error("render cache is empty after two injections")
	}
}

// TestConcurrentInject shares one engine between goroutines (run with -race).
func TestConcurrentInject(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	want, err := e.Inject(Request{Pod: testPod("web")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := e.Inject(Request{Pod: testPod("web")})
			if err == nil && !reflect.DeepEqual(got.Pod, want.Pod) {
				err = errors.New("concurrent injection differs")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestTemplateOutputIsChecked(t *testing.T) {
	t.Parallel()
	bad := []byte("templates:\n  sidecar: |\n    spec:\n      containers:\n      - name: istio-proxy\n        imagee: typo\n")
	e := mustEngine(t, config.Sources{InjectionConfig: bad})
	_, err := e.Inject(Request{Pod: testPod("web")})
	if err == nil || !strings.Contains(err.Error(), "imagee") || !strings.Contains(err.Error(), "template sidecar") {
		t.Errorf("err = %v, want it to name template sidecar and field imagee", err)
	}
}

func TestUninjectWithoutStatusIsNoop(t *testing.T) {
	t.Parallel()
	p := testPod("plain")
	want := testPod("plain")
	if err := Uninject(p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, want) {
		t.Error("Uninject changed a pod that was never injected")
	}
}

func TestUninjectBadStatus(t *testing.T) {
	t.Parallel()
	err := Uninject(testPod("p", withAnnotation(AnnotationStatus, "{not json")))
	var ie *Error
	if !errors.As(err, &ie) || ie.Field != AnnotationStatus {
		t.Errorf("err = %v, want an error naming %s", err, AnnotationStatus)
	}
}

// TestAdditiveOverlayMatchesOverlay checks the typed fast path against the
// strategic-merge overlay on the built-in sidecar output.
func TestAdditiveOverlayMatchesOverlay(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	for _, native := range []bool{false, true} {
		pod := testPod("web", withAnnotation("team", "a"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "s"}}
			p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
		})
		s, err := e.resolve(pod, "apps", Request{NativeSidecars: native})
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.render("sidecar", e.templateData(pod, s))
		if err != nil {
			t.Fatal(err)
		}
		if !r.additive {
			t.Fatal("the sidecar output is not additive")
		}
		fast, slow := pod.DeepCopy(), pod.DeepCopy()
		if !podmerge.Add(fast, r.pod) {
			t.Fatal("podmerge.Add refused a pod without injected items")
		}
		if err := podmerge.Merge(slow, r.tree, nil); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			a, _ := json.Marshal(fast)
			b, _ := json.Marshal(slow)
			t.Errorf("native=%v: fast path differs:\nfast: %s\nslow: %s", native, a, b)
		}
		if podmerge.Add(fast, r.pod) {
			t.Error("podmerge.Add accepted a pod that already has the items")
		}
	}
}

// TestTemplateNamesOnce: a template named many times (a hostile annotation
// of 10,000 names) is applied once, so the review's work does not grow
// with the annotation.
func TestTemplateNamesOnce(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	pod := testPod("p", withAnnotation(AnnotationTemplates, strings.Repeat("sidecar,", 10000)+"sidecar"))
	res, err := e.Inject(Request{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Templates) != 1 || res.Templates[0] != "sidecar" {
		t.Errorf("templates applied: %d (%v...), want sidecar once", len(res.Templates), res.Templates[:min(3, len(res.Templates))])
	}
}

// TestTemplateWithoutAnnotations: a configured template that sets no
// annotations, on a pod that has none, is injected (the prometheus merge
// writes its annotations into a map it has to create).
func TestTemplateWithoutAnnotations(t *testing.T) {
	custom := []byte("templates:\n  sidecar: |\n    spec:\n      containers:\n      - name: istio-proxy\n        image: proxy:1\n")
	e := mustEngine(t, config.Sources{InjectionConfig: custom})
	pod := testPod("bare")
	pod.Annotations = nil
	res, err := e.Inject(Request{Pod: pod})
	if err != nil || res.Skipped {
		t.Fatalf("inject: %v %s", err, res.Reason)
	}
	if got := res.Pod.Annotations["prometheus.io/path"]; got != "/stats/prometheus" {
		t.Errorf("prometheus.io/path %q, want /stats/prometheus", got)
	}
}
