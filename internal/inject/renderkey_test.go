package inject

import (
	"bytes"
	"reflect"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/internal/config"
)

func execute(t *testing.T, e *Engine, name string, d *templateData) string {
	t.Helper()
	var b bytes.Buffer
	if err := e.cfg.Templates[name].Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPureTemplatesReadOnlyKeyedInputs proves that the templates rendered
// by key read nothing outside renderKey: changing every other input leaves
// their output unchanged.
func TestPureTemplatesReadOnlyKeyedInputs(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	pod := testPod("web", withAnnotation("a", "b"))
	s, err := e.resolve(pod, "apps", Request{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range pureTemplates {
		base := e.templateData(pod, s)
		want := execute(t, e, name, base)

		other := *base
		other.ObjectMeta = metav1.ObjectMeta{Name: "other", Namespace: "elsewhere",
			Labels:      map[string]string{"app": "other", "version": "v9"},
			Annotations: map[string]string{"inject.istio.io/templates": "x", "status.sidecar.istio.io/port": "1"}}
		other.Spec = corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 1}}}}, HostNetwork: true}
		other.TypeMeta = metav1.TypeMeta{Kind: "Other", APIVersion: "x/v1"}
		other.DeploymentMeta = metav1.ObjectMeta{Name: "d", Namespace: "n"}
		other.Revision = "other"
		other.InboundTrafficPolicyMode = "LOCALHOST"
		pc := &meshv1alpha1.ProxyConfig{DiscoveryAddress: "x:1", StatusPort: 1, ProxyMetadata: base.ProxyConfig.GetProxyMetadata()}
		other.ProxyConfig = pc
		if got := execute(t, e, name, &other); got != want {
			t.Errorf("template %s reads an input outside renderKey", name)
		}
		if !bytes.Equal(renderKey(nil, name, base), renderKey(nil, name, &other)) {
			t.Errorf("renderKey of %s changed with unkeyed inputs", name)
		}
	}
}

// TestRenderKeyCoversSettings changes each exported Settings field in turn
// and checks that the key changes.
func TestRenderKeyCoversSettings(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, config.Sources{})
	pod := testPod("web")
	s, err := e.resolve(pod, "apps", Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.templateData(pod, s)
	base := renderKey(nil, "sidecar", d)
	st := reflect.TypeFor[settings]()
	for i := range st.NumField() {
		f := st.Field(i)
		if !f.IsExported() {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			changed := *s
			fv := reflect.ValueOf(&changed).Elem().Field(i)
			switch fv.Kind() {
			case reflect.String:
				fv.SetString(fv.String() + "x")
			case reflect.Bool:
				fv.SetBool(!fv.Bool())
			case reflect.Int32, reflect.Int64:
				fv.SetInt(fv.Int() + 1)
			case reflect.Slice:
				fv.Set(reflect.Append(fv, reflect.Zero(fv.Type().Elem())))
			case reflect.Map:
				m := reflect.MakeMap(fv.Type())
				m.SetMapIndex(reflect.ValueOf("k").Convert(fv.Type().Key()), reflect.Zero(fv.Type().Elem()))
				fv.Set(m)
			case reflect.Struct:
				// config.Resources: change a request.
				changed.Resources = config.Resources{Requests: map[string]string{"cpu": "1m"}}
			default:
				t.Fatalf("no mutation for kind %s", fv.Kind())
			}
			cd := *d
			cd.Settings = &changed
			if bytes.Equal(base, renderKey(nil, "sidecar", &cd)) {
				t.Errorf("renderKey ignores Settings.%s", f.Name)
			}
		})
	}
}

// countingObserver records render cache lookups.
type countingObserver struct{ hits, misses int }

func (c *countingObserver) Lookup(hit bool) {
	if hit {
		c.hits++
	} else {
		c.misses++
	}
}

// TestRenderCacheObserver: a pod is rendered and parsed (a miss), the
// same pod again comes from the cache (a hit), and the pod with other
// settings misses again.
func TestRenderCacheObserver(t *testing.T) {
	var obs countingObserver
	e, err := New(Options{Config: mustConfig(t, config.Sources{}), RenderCacheObserver: &obs})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{testPod("a"), testPod("a"), testPod("a", withAnnotation("sidecar.istio.io/proxyCPU", "300m"))} {
		if _, err := e.Inject(Request{Pod: p}); err != nil {
			t.Fatal(err)
		}
	}
	if obs.misses != 2 || obs.hits != 1 {
		t.Errorf("%d misses and %d hits, want 2 and 1", obs.misses, obs.hits)
	}

	// A configured template is executed each time and found by its
	// rendered text: a miss, then a hit.
	custom := []byte("templates:\n  sidecar: |\n    spec:\n      containers:\n      - name: istio-proxy\n        image: proxy:1\n")
	obs = countingObserver{}
	e, err = New(Options{Config: mustConfig(t, config.Sources{InjectionConfig: custom}), RenderCacheObserver: &obs})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.Inject(Request{Pod: testPod("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if obs.misses != 1 || obs.hits != 1 {
		t.Errorf("configured template: %d misses and %d hits, want 1 and 1", obs.misses, obs.hits)
	}
}
