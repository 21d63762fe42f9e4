package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/lru"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/internal/inject/podmerge"
	"github.com/meshinject/meshinject/internal/jsontree"
	"github.com/meshinject/meshinject/templates"
)

// templateData is what a template sees, with Istio's field names so custom
// templates written for Istio render unchanged. Settings is meshinject's
// addition: the validated per-pod values.
type templateData struct {
	TypeMeta                 metav1.TypeMeta
	DeploymentMeta           metav1.ObjectMeta
	ObjectMeta               metav1.ObjectMeta
	Spec                     corev1.PodSpec
	ProxyConfig              *meshv1alpha1.ProxyConfig
	MeshConfig               *meshv1alpha1.MeshConfig
	Values                   map[string]any
	Revision                 string
	NativeSidecars           bool
	ProxyImage               string
	ProxyInitImage           string
	ProxyUID                 int64
	ProxyGID                 int64
	InboundTrafficPolicyMode string
	CompliancePolicy         string
	Settings                 *settings
}

// selectTemplates returns the templates named by inject.istio.io/templates
// (aliases expanded one level) or the configured defaults.
func (e *Engine) selectTemplates(pod *corev1.Pod) ([]string, error) {
	var requested []string
	if raw, ok := pod.Annotations[AnnotationTemplates]; ok {
		for _, n := range strings.Split(raw, ",") {
			if n = strings.TrimSpace(n); n != "" {
				requested = append(requested, n)
			}
		}
		if len(requested) == 0 {
			return nil, fieldError(AnnotationTemplates, raw, fmt.Errorf("names no template"))
		}
	} else {
		requested = e.cfg.Injection.DefaultTemplates
	}
	// Each template is applied once, in the order first named, however
	// often the annotation (or its aliases) repeats it: the work is bounded
	// by the configured templates, not by the annotation's length.
	out := make([]string, 0, len(e.cfg.Templates))
	seen := make(map[string]bool, len(e.cfg.Templates))
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range requested {
		if alias, ok := e.cfg.Injection.Aliases[n]; ok {
			for _, a := range alias {
				add(a)
			}
			continue
		}
		add(n)
	}
	for _, n := range out {
		if gatewayControllerTemplates[n] {
			return nil, fieldError(AnnotationTemplates, pod.Annotations[AnnotationTemplates],
				fmt.Errorf("template %q renders Deployments for istiod's gateway controller, not pods", n))
		}
		if _, ok := e.cfg.Templates[n]; !ok {
			return nil, fieldError(AnnotationTemplates, pod.Annotations[AnnotationTemplates],
				fmt.Errorf("requested template %q not found; have %v", n, templates.Names(e.cfg.Templates)))
		}
	}
	return out, nil
}

func (e *Engine) templateData(pod *corev1.Pod, s *settings) *templateData {
	mode := "passthrough"
	if e.cfg.Mesh.GetInboundTrafficPolicy().GetMode() == meshv1alpha1.MeshConfig_InboundTrafficPolicy_LOCALHOST {
		mode = "localhost"
	}
	return &templateData{
		TypeMeta:                 s.workload.TypeMeta,
		DeploymentMeta:           metav1.ObjectMeta{Name: s.workload.Name, Namespace: s.namespace},
		ObjectMeta:               pod.ObjectMeta,
		Spec:                     pod.Spec,
		ProxyConfig:              s.proxyConfig,
		MeshConfig:               e.cfg.Mesh,
		Values:                   e.cfg.Values,
		Revision:                 e.cfg.Revision,
		NativeSidecars:           s.native,
		ProxyImage:               s.proxyImage,
		ProxyInitImage:           s.proxyInitImage,
		ProxyUID:                 proxyUID,
		ProxyGID:                 proxyGID,
		InboundTrafficPolicyMode: mode,
		CompliancePolicy:         e.cfg.CompliancePolicy,
		Settings:                 s,
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes template name and returns its parsed output. The result
// is shared and read-only.
func (e *Engine) render(name string, data *templateData) (*rendered, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		buf.Reset()
		bufPool.Put(buf)
	}()
	var inputKey []byte
	if e.pure[name] && e.cache.enabled() {
		// The key is built in buf's spare capacity and copied before
		// Execute writes over it.
		inputKey = renderKey(buf.AvailableBuffer(), name, data)
		if r, ok := e.cache.get(inputKey); ok {
			e.observe(true)
			return r, nil
		}
		inputKey = append([]byte(nil), inputKey...)
	}
	if err := e.cfg.Templates[name].Execute(buf, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	if r, ok := e.cache.get(buf.Bytes()); ok {
		if inputKey != nil {
			e.cache.put(inputKey, r)
		}
		e.observe(true)
		return r, nil
	}
	e.observe(false)
	tree, err := parsePartialPod(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	r, err := newRendered(tree)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	e.cache.put(buf.Bytes(), r)
	if inputKey != nil {
		e.cache.put(inputKey, r)
	}
	return r, nil
}

// rendered is a template's parsed output. It is immutable: overlays work
// on copies.
type rendered struct {
	// tree is the partial Pod as a JSON tree.
	tree map[string]any
	// additive is set when the output only sets metadata labels and
	// annotations and adds items to name-keyed spec lists, with no
	// strategic-merge directives or nulls; pod is then its typed form.
	additive bool
	pod      *corev1.Pod
}

func newRendered(tree map[string]any) (*rendered, error) {
	r := &rendered{tree: tree}
	if !podmerge.Additive(tree) {
		return r, nil
	}
	r.pod = &corev1.Pod{}
	if err := jsontree.FromTree(tree, r.pod); err != nil {
		return nil, fmt.Errorf("output is not a Pod: %w", err)
	}
	r.additive = true
	return r, nil
}

// parsePartialPod parses rendered YAML and checks that every field is a Pod
// field, so a typo in a template is an error rather than a dropped field.
func parsePartialPod(b []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("output is not YAML: %w", err)
	}
	var tree map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tree); err != nil {
		return nil, fmt.Errorf("output is not a Pod: %w", err)
	}
	if tree == nil {
		return map[string]any{}, nil
	}
	var pod corev1.Pod
	strict, err := kjson.UnmarshalStrict(stripDirectives(j), &pod)
	if err != nil {
		return nil, fmt.Errorf("output is not a Pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("output is not a Pod: %w", strict[0])
	}
	return tree, nil
}

// stripDirectives removes strategic-merge directives ($patch,
// $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList/...) so the
// rest can be checked against the Pod schema.
func stripDirectives(j []byte) []byte {
	if !bytes.Contains(j, []byte(`"$`)) {
		return j
	}
	var v any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &v); err != nil {
		return j
	}
	v = dropDirectiveKeys(v)
	out, err := json.Marshal(v)
	if err != nil {
		return j
	}
	return out
}

func dropDirectiveKeys(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if strings.HasPrefix(k, "$") {
				delete(t, k)
				continue
			}
			t[k] = dropDirectiveKeys(c)
		}
	case []any:
		for i, c := range t {
			t[i] = dropDirectiveKeys(c)
		}
	}
	return v
}

// observe tells the observer, if any, of a lookup.
func (e *Engine) observe(hit bool) {
	if e.observer != nil {
		e.observer.Lookup(hit)
	}
}

// renderCache maps rendered template text (or, for pure templates, their
// inputs) to the parsed output. Replicas of a workload render identically,
// so the YAML parse is paid once per distinct output. Entries are
// immutable; the least recently used go first. A nil cache caches nothing.
// Speed code: its figure is in docs/performance.md, "Speed code".
type renderCache struct {
	lru *lru.Cache
}

func newRenderCache(size int) *renderCache {
	if size <= 0 {
		return nil
	}
	return &renderCache{lru: lru.New(size)}
}

func (c *renderCache) enabled() bool { return c != nil }

func (c *renderCache) get(key []byte) (*rendered, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.lru.Get(string(key))
	if !ok {
		return nil, false
	}
	return v.(*rendered), true
}

func (c *renderCache) put(key []byte, r *rendered) {
	if c != nil {
		c.lru.Add(string(key), r)
	}
}
