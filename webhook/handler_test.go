package webhook

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshinject/meshinject/hack/benchpods"
	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
)

func newTestHandler(t testing.TB, native bool) (*Handler, *metrics) {
	t.Helper()
	cfg, err := config.Load(config.Sources{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := inject.New(inject.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry(), MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Options{Engines: EngineSourceFunc(func() *inject.Engine { return e }), Native: Always(native), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-","labels":{"app":"web"}%s},` +
	`"spec":{"containers":[{"name":"app","image":"registry.example/app:1","ports":[{"containerPort":8080}]}]%s}}`

// rawRequest is a CREATE review of the pod JSON raw in namespace shop.
func rawRequest(raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "shop",
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}}
}

func podRequest(meta, spec string) admission.Request {
	return rawRequest([]byte(strings.Replace(strings.Replace(podJSON, "%s", meta, 1), "%s", spec, 1)))
}

func testCtx(t *testing.T, path string) context.Context {
	return withPathParams(logf.IntoContext(t.Context(), testr.New(t)), path)
}

// applyPatch applies resp's JSON patch to raw with evanphx/json-patch.
func applyPatch(raw []byte, resp admission.Response) ([]byte, error) {
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(raw)
}

// applied applies resp's patch to the request's pod bytes.
func applied(t *testing.T, req admission.Request, resp admission.Response) map[string]any {
	t.Helper()
	out, err := applyPatch(req.Object.Raw, resp)
	if err != nil {
		t.Fatalf("patch does not apply to the request: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func names(t *testing.T, pod map[string]any, list string) []string {
	t.Helper()
	items, _ := pod["spec"].(map[string]any)[list].([]any)
	var out []string
	for _, it := range items {
		out = append(out, it.(map[string]any)["name"].(string))
	}
	return out
}

func TestHandleInjects(t *testing.T) {
	t.Parallel()
	for _, native := range []bool{false, true} {
		h, m := newTestHandler(t, native)
		req := podRequest("", "")
		resp := h.Handle(testCtx(t, "/inject"), req)
		if !resp.Allowed || len(resp.Patch) == 0 {
			t.Fatalf("native=%v: response %+v", native, resp.Result)
		}
		pod := applied(t, req, resp)
		want := []string{"app", "istio-proxy"}
		wantInit := []string{"istio-init"}
		if native {
			want, wantInit = []string{"app"}, []string{"istio-init", "istio-proxy"}
		}
		if got := names(t, pod, "containers"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("native=%v: containers %v, want %v", native, got, want)
		}
		if got := names(t, pod, "initContainers"); strings.Join(got, ",") != strings.Join(wantInit, ",") {
			t.Errorf("native=%v: init containers %v, want %v", native, got, wantInit)
		}
		if _, ok := pod["metadata"].(map[string]any)["namespace"]; ok {
			t.Error("the patch adds metadata.namespace, which the request did not carry")
		}
		if testutil.ToFloat64(m.successes) != 1 || testutil.ToFloat64(m.requests) != 1 {
			t.Errorf("metrics: success %v requests %v", testutil.ToFloat64(m.successes), testutil.ToFloat64(m.requests))
		}
	}
}

func TestHandleKeepsUnknownFields(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	req := podRequest(`,"futureMeta":"m"`, `,"futureSpec":{"on":true},"initContainers":[{"name":"setup","image":"s","futureInit":"kept"}],"volumes":[{"name":"data","futureSource":{"size":"1Gi"}}]`)
	pod := applied(t, req, h.Handle(testCtx(t, "/inject"), req))
	spec := pod["spec"].(map[string]any)
	if pod["metadata"].(map[string]any)["futureMeta"] != "m" || spec["futureSpec"] == nil {
		t.Error("unknown metadata or spec field removed")
	}
	for _, c := range spec["initContainers"].([]any) {
		c := c.(map[string]any)
		if (c["futureInit"] != nil) != (c["name"] == "setup") {
			t.Errorf("unknown init container field on %v", c["name"])
		}
	}
	for _, v := range spec["volumes"].([]any) {
		v := v.(map[string]any)
		if (v["futureSource"] != nil) != (v["name"] == "data") {
			t.Errorf("unknown volume field on %v", v["name"])
		}
	}
}

func TestHandleSkips(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		meta, spec, ns, warning, kind string
	}{
		"host network": {spec: `,"hostNetwork":true`, warning: "not injected: pod has hostNetwork", kind: inject.SkipHostNetwork},
		"opted out":    {meta: `,"annotations":{"sidecar.istio.io/inject":"false"}`, warning: "not injected: annotation sidecar.istio.io/inject=false", kind: inject.SkipExplicitOff},
		"label wins":   {meta: `,"annotations":{"sidecar.istio.io/inject":"true"},"labels":{"sidecar.istio.io/inject":"false"}`, warning: "label sidecar.istio.io/inject=false", kind: inject.SkipExplicitOff},
		"kube-system":  {ns: "kube-system", warning: "namespace kube-system is never injected", kind: inject.SkipIgnoredNS},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, m := newTestHandler(t, false)
			req := podRequest(tc.meta, tc.spec)
			if tc.ns != "" {
				req.Namespace = tc.ns
			}
			resp := h.Handle(testCtx(t, "/inject"), req)
			if !resp.Allowed || len(resp.Patch) != 0 {
				t.Fatalf("want allowed without patch, got %+v", resp)
			}
			if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], warningPrefix) || !strings.Contains(resp.Warnings[0], tc.warning) {
				t.Errorf("warnings = %q, want one containing %q", resp.Warnings, tc.warning)
			}
			if got := testutil.ToFloat64(m.skips.WithLabelValues(tc.kind)); got != 1 {
				t.Errorf("skip metric %s = %v", tc.kind, got)
			}
		})
	}
}

func TestHandleErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		req      func() admission.Request
		path     string
		code     int32
		contains []string
	}{
		"bad annotation": {req: func() admission.Request {
			return podRequest(`,"annotations":{"sidecar.istio.io/proxyCPU":"fast"}`, "")
		}, code: 403, contains: []string{"sidecar.istio.io/proxyCPU", `"fast"`}},
		"unknown template": {req: func() admission.Request {
			return podRequest(`,"annotations":{"inject.istio.io/templates":"nosuch"}`, "")
		}, code: 403, contains: []string{"inject.istio.io/templates", `requested template "nosuch" not found`}},
		"undecodable pod": {req: func() admission.Request {
			r := podRequest("", "")
			r.Object.Raw = []byte(`{"spec":{"containers":"not a list"}}`)
			return r
		}, code: 400, contains: []string{"request.object.spec.containers: want an array, got a string"}},
		"missing object": {req: func() admission.Request {
			r := podRequest("", "")
			r.Object.Raw = nil
			return r
		}, code: 400, contains: []string{"request.object: missing"}},
		"bad quantity": {req: func() admission.Request {
			return podRequest("", `,"resources":{"limits":{"cpu":"abc"}}`)
		}, code: 400, contains: []string{"request.object.spec.resources.limits.cpu: quantities must match"}},
		"annotation not a string": {req: func() admission.Request {
			return podRequest(`,"annotations":{"app":1}`, "")
		}, code: 400, contains: []string{"request.object.metadata.annotations.app: want a string, got a number"}},
		"no uid": {req: func() admission.Request {
			r := podRequest("", "")
			r.UID = ""
			return r
		}, code: 400, contains: []string{"request.uid: missing"}},
		"bad path": {req: func() admission.Request { return podRequest("", "") }, path: "/inject/cluster", code: 400, contains: []string{"pairs"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHandler(t, false)
			path := tc.path
			if path == "" {
				path = "/inject"
			}
			resp := h.Handle(testCtx(t, path), tc.req())
			if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.code {
				t.Fatalf("want denied with code %d, got %+v", tc.code, resp.Result)
			}
			for _, s := range tc.contains {
				if !strings.Contains(resp.Result.Message, s) {
					t.Errorf("message %q does not contain %q", resp.Result.Message, s)
				}
			}
		})
	}
}

func TestHandleNotAPod(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, false)
	req := podRequest("", "")
	req.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	resp := h.Handle(testCtx(t, "/inject"), req)
	if !resp.Allowed || len(resp.Patch) != 0 || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "not a Pod") {
		t.Errorf("response %+v warnings %q", resp.Result, resp.Warnings)
	}
}

func TestHandlePathParams(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, false)
	req := podRequest("", "")
	pod := applied(t, req, h.Handle(testCtx(t, "/inject/cluster/east/net/network-1/extra_key/a--slash--b"), req))
	env := map[string]string{}
	for _, c := range pod["spec"].(map[string]any)["containers"].([]any) {
		c := c.(map[string]any)
		if c["name"] != "istio-proxy" {
			continue
		}
		for _, e := range c["env"].([]any) {
			e := e.(map[string]any)
			if v, ok := e["value"].(string); ok {
				env[e["name"].(string)] = v
			}
		}
	}
	for k, want := range map[string]string{"ISTIO_META_CLUSTER_ID": "east", "ISTIO_META_NETWORK": "network-1", "EXTRA_KEY": "a/b"} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
}

func TestParsePathParams(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		env map[string]string
		err bool
	}{
		"/inject":            {},
		"/inject/":           {},
		"/inject/cluster/c1": {env: map[string]string{"ISTIO_META_CLUSTER_ID": "c1"}},
		"/inject/net/n1/x/y": {env: map[string]string{"ISTIO_META_NETWORK": "n1", "X": "y"}},
		"/inject/cluster":    {err: true},
		"/inject//v":         {err: true},
	}
	for path, tc := range tests {
		r := parsePathParams(path)
		if (r.err != nil) != tc.err || len(r.env) != len(tc.env) {
			t.Errorf("%s: %+v", path, r)
		}
		for k, v := range tc.env {
			if r.env[k] != v {
				t.Errorf("%s: %s = %q, want %q", path, k, r.env[k], v)
			}
		}
	}
}

// TestPatchMatchesEngine applies each bench pod's patch to the request and
// compares the result with the engine's own output for that pod; the patch
// only adds to the pod's lists, it never replaces or removes the user's
// items because template items come first.
func TestPatchMatchesEngine(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	for _, p := range benchpods.All() {
		req := rawRequest(p.JSON)
		resp := h.Handle(testCtx(t, "/inject"), req)
		if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("%s: response %+v", p.Name, resp.AdmissionResponse)
		}
		got, err := applyPatch(req.Object.Raw, resp)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(p.JSON, &pod); err != nil {
			t.Fatal(err)
		}
		ns := pod.Namespace
		pod.Namespace = req.Namespace
		res, err := h.opts.Engines.Engine().Inject(inject.Request{Pod: &pod, Namespace: req.Namespace, NativeSidecars: true})
		if err != nil {
			t.Fatal(err)
		}
		res.Pod.Namespace = ns
		want, err := json.Marshal(res.Pod)
		if err != nil {
			t.Fatal(err)
		}
		var gotPod, wantPod corev1.Pod
		if err := json.Unmarshal(got, &gotPod); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &wantPod); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(gotPod, wantPod) {
			t.Errorf("%s: patched request differs from the engine's pod:\n%s", p.Name, cmp.Diff(wantPod, gotPod))
		}
		var ops []struct{ Op, Path string }
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if op.Op != "add" && strings.HasPrefix(op.Path, "/spec/volumes/") {
				t.Errorf("%s: %s %s: a user volume is rewritten", p.Name, op.Op, op.Path)
			}
		}
	}
}

// TestHandleAuditAnnotations: every response carries the decision, the
// revision and the configuration's hash for the API server's audit log,
// and the templates when the pod was injected.
func TestHandleAuditAnnotations(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	hash := h.opts.Engines.Engine().Config().Hash
	if len(hash) != 12 {
		t.Fatalf("configuration hash %q, want 12 hex digits", hash)
	}
	for _, c := range []struct {
		name string
		req  admission.Request
		want map[string]string
	}{
		{"injected", podRequest("", ""), map[string]string{"decision": "injected", "templates": "sidecar"}},
		{"skipped", podRequest("", `,"hostNetwork":true`), map[string]string{"decision": "skipped:host_network"}},
		{"denied", podRequest(`,"annotations":{"sidecar.istio.io/proxyCPU":"fast"}`, ""), map[string]string{"decision": "denied"}},
		{"error", rawRequest([]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"no"}}`)), map[string]string{"decision": "error"}},
	} {
		resp := h.Handle(testCtx(t, "/inject"), c.req)
		want := map[string]string{"revision": "default", "config": hash}
		maps.Copy(want, c.want)
		if !maps.Equal(resp.AuditAnnotations, want) {
			t.Errorf("%s: audit annotations %v, want %v", c.name, resp.AuditAnnotations, want)
		}
	}
}

// TestInjectionTimeBuckets: the injection-time histogram has Istio's
// bucket boundaries, so istiod's alerts and dashboards read it, and ours
// below a millisecond.
func TestInjectionTimeBuckets(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.review("shop").success(time.Millisecond)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var bounds []float64
	for _, f := range families {
		if f.GetName() == "sidecar_injection_time_seconds" {
			for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
		}
	}
	for _, want := range append([]float64{0.00005, 0.0008}, istioBuckets...) {
		if !slices.Contains(bounds, want) {
			t.Errorf("no bucket bound %v in %v", want, bounds)
		}
	}
	if !slices.IsSorted(bounds) {
		t.Errorf("bounds not sorted: %v", bounds)
	}
}

// TestMetricsNamespaceLabel: the counters carry the review's namespace
// only when asked to.
func TestMetricsNamespaceLabel(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		h, _ := newTestHandler(t, true)
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg, MetricsOptions{NamespaceLabel: on})
		if err != nil {
			t.Fatal(err)
		}
		h.opts.Metrics = m
		h.Handle(testCtx(t, "/inject"), podRequest("", ""))
		h.Handle(testCtx(t, "/inject"), podRequest("", `,"hostNetwork":true`))
		want := `
# HELP sidecar_injection_requests_total Total number of sidecar injection requests.
# TYPE sidecar_injection_requests_total counter
sidecar_injection_requests_total 2
# HELP sidecar_injection_skip_total Total number of skipped sidecar injection requests, by reason.
# TYPE sidecar_injection_skip_total counter
sidecar_injection_skip_total{reason="host_network"} 1
`
		if on {
			want = strings.ReplaceAll(strings.ReplaceAll(want, "total 2", `total{namespace="shop"} 2`), `{reason="host_network"}`, `{namespace="shop",reason="host_network"}`)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sidecar_injection_requests_total", "sidecar_injection_skip_total"); err != nil {
			t.Errorf("namespace label %v: %v", on, err)
		}
	}
}
