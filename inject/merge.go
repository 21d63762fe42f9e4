package inject

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	gojson "github.com/goccy/go-json"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	kjson "sigs.k8s.io/json"

	"github.com/meshinject/meshinject/internal/preserve"
)

// Set-once lookup tables and schemas.
var (
	podSchema       = mustSchema(&corev1.Pod{})
	containerSchema = mustSchema(&corev1.Container{})
	metaFields      = jsonFieldIndex(reflect.TypeFor[metav1.ObjectMeta]())
	specFields      = jsonFieldIndex(reflect.TypeFor[corev1.PodSpec]())
	// keyedLists are the PodSpec lists merged by name that are merged
	// sparsely: only the items a template names are converted and patched.
	keyedLists = map[string]bool{
		"containers": true, "initContainers": true, "ephemeralContainers": true,
		"volumes": true, "imagePullSecrets": true,
	}
)

func mustSchema(v any) strategicpatch.LookupPatchMeta {
	s, err := strategicpatch.NewPatchMetaFromStruct(v)
	if err != nil {
		panic(fmt.Sprintf("inject: strategic merge schema for %T: %v", v, err))
	}
	return s
}

// jsonFieldIndex maps the JSON names of t's fields to their indexes.
func jsonFieldIndex(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = i
		}
	}
	return out
}

// marshalJSON encodes v as encoding/json does: goccy/go-json writes the
// same bytes (TestMarshalJSONMatchesStdlib) in a fraction of the time.
func marshalJSON(v any) ([]byte, error) { return gojson.Marshal(v) }

// fromTree decodes a JSON tree into out.
func fromTree(tree any, out any) error {
	b, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	return kjson.UnmarshalCaseSensitivePreserveInts(b, out)
}

// overlay merges patch, a partial Pod rendered by a template, into pod with
// a strategic merge patch for corev1.Pod. Only what the patch touches is
// converted: the metadata and spec fields it names and, for lists merged by
// name, the items it names. Items the patch contributes come first in each
// list, followed by the pod's other items in their order. Original values of
// touched fields are noted in rec (for Uninject). It runs in three steps:
// plan (what the patch touches, and its current values as a tree), merge
// (Kubernetes' strategic merge of the patch into those values) and splice
// (the merged fields back into pod).
func overlay(pod *corev1.Pod, patch map[string]any, rec *record) error {
	parts, orig, err := planOverlay(pod, patch, rec)
	if err != nil || len(parts) == 0 {
		return err
	}
	merged, err := strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(orig, patch, podSchema)
	if err != nil {
		return fmt.Errorf("merge template output: %w", err)
	}
	var partial corev1.Pod
	if err := fromTree(merged, &partial); err != nil {
		return fmt.Errorf("merge template output: %w", err)
	}
	for _, p := range parts {
		p.splice(&partial)
	}
	return nil
}

// overlayPart is what a patch touches in one top-level field of the pod
// (metadata or spec).
type overlayPart struct {
	name   string
	target reflect.Value
	index  map[string]int
	// keys are the fields the patch names (all of them when full).
	keys []string
	// sparse are the lists merged by name, with the pod's items the patch
	// names.
	sparse map[string]map[int]bool
	// full is a patch that replaces or retains keys of the whole object.
	full bool
}

// planOverlay returns the parts patch touches and their current values,
// as the tree the strategic merge takes.
func planOverlay(pod *corev1.Pod, patch map[string]any, rec *record) ([]*overlayPart, map[string]any, error) {
	var parts []*overlayPart
	orig := map[string]any{}
	for top, pv := range patch {
		var p *overlayPart
		switch top {
		case "metadata":
			p = &overlayPart{name: top, target: reflect.ValueOf(&pod.ObjectMeta).Elem(), index: metaFields}
		case "spec":
			p = &overlayPart{name: top, target: reflect.ValueOf(&pod.Spec).Elem(), index: specFields}
		case "apiVersion", "kind":
			continue
		default:
			return nil, nil, fmt.Errorf("unsupported top-level field %q in template output", top)
		}
		pm, ok := pv.(map[string]any)
		if !ok {
			if pv == nil {
				continue
			}
			return nil, nil, fmt.Errorf("template output field %s is not an object", top)
		}
		o, err := p.original(pm, rec)
		if err != nil {
			return nil, nil, err
		}
		orig[top] = o
		parts = append(parts, p)
	}
	return parts, orig, nil
}

// original sets the part's keys from pm and returns the current values of
// what it touches.
func (p *overlayPart) original(pm map[string]any, rec *record) (map[string]any, error) {
	fullKeys := p.keysOf(pm)
	o := map[string]any{}
	if p.full {
		tree, err := preserve.Value(p.target.Addr().Interface())
		if err != nil {
			return nil, err
		}
		o = tree.(map[string]any)
		p.keys = p.keys[:0]
		for k := range p.index {
			p.keys = append(p.keys, k)
		}
	}
	p.sparse = map[string]map[int]bool{}
	for _, k := range p.keys {
		fi, ok := p.index[k]
		if !ok {
			return nil, fmt.Errorf("template output: unknown field %s.%s", p.name, k)
		}
		fv := p.target.Field(fi)
		items, isList := pm[k].([]any)
		if !p.full && p.name == "spec" && keyedLists[k] && isList && !fullKeys[k] && !hasReplace(items) {
			matched, origItems, err := namedItems(fv, items)
			if err != nil {
				return nil, err
			}
			if origItems != nil {
				o[k] = origItems
			}
			p.sparse[k] = matched
			continue
		}
		if p.full {
			continue
		}
		var t any
		if !fv.IsZero() {
			var err error
			if t, err = preserve.Value(fv.Interface()); err != nil {
				return nil, err
			}
			o[k] = t
		}
		if !(p.name == "metadata" && (k == "labels" || k == "annotations")) {
			rec.touch(p.name, k, t)
		}
	}
	return o, nil
}

// keysOf sets the fields pm names (and full, for a directive on the whole
// object) and returns the lists it orders or deletes from as a whole.
func (p *overlayPart) keysOf(pm map[string]any) map[string]bool {
	fullKeys := map[string]bool{}
	seen := map[string]bool{}
	for k := range pm {
		if !strings.HasPrefix(k, "$") {
			seen[k] = true
			continue
		}
		if ref, ok := strings.CutPrefix(k, "$setElementOrder/"); ok {
			fullKeys[ref], seen[ref] = true, true
		} else if ref, ok := strings.CutPrefix(k, "$deleteFromPrimitiveList/"); ok {
			fullKeys[ref], seen[ref] = true, true
		} else {
			p.full = true // $patch or $retainKeys on the whole object
		}
	}
	for k := range seen {
		p.keys = append(p.keys, k)
	}
	return fullKeys
}

// namedItems returns the indices of list's items that items names, and
// those items as trees.
func namedItems(list reflect.Value, items []any) (map[int]bool, []any, error) {
	names := map[string]bool{}
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				names[n] = true
			}
		}
	}
	matched := map[int]bool{}
	var orig []any
	for i := range list.Len() {
		if names[list.Index(i).FieldByName("Name").String()] {
			t, err := preserve.Value(list.Index(i).Interface())
			if err != nil {
				return nil, nil, err
			}
			orig = append(orig, t)
			matched[i] = true
		}
	}
	return matched, orig, nil
}

// splice sets the part's fields from the merged partial pod; a list
// merged by name gets the merged items first, then the pod's others.
func (p *overlayPart) splice(partial *corev1.Pod) {
	src := reflect.ValueOf(&partial.ObjectMeta).Elem()
	if p.name == "spec" {
		src = reflect.ValueOf(&partial.Spec).Elem()
	}
	for _, k := range p.keys {
		fi := p.index[k]
		nv := src.Field(fi)
		matched, ok := p.sparse[k]
		if !ok {
			p.target.Field(fi).Set(nv)
			continue
		}
		old := p.target.Field(fi)
		out := reflect.MakeSlice(nv.Type(), 0, nv.Len()+old.Len()-len(matched))
		out = reflect.AppendSlice(out, nv)
		for i := range old.Len() {
			if !matched[i] {
				out = reflect.Append(out, old.Index(i))
			}
		}
		p.target.Field(fi).Set(out)
	}
}

// addOverlay is overlay for an additive template output (see rendered):
// when none of its list items is already in pod, the strategic merge
// reduces to putting copies of its items first and setting its labels and
// annotations, which this does on the typed pod directly. It returns false,
// changing nothing, when an item is already present.
func addOverlay(pod *corev1.Pod, add *corev1.Pod) bool {
	s, a := &pod.Spec, &add.Spec
	if anyNamed(s.Containers, a.Containers) || anyNamed(s.InitContainers, a.InitContainers) ||
		anyNamed(s.EphemeralContainers, a.EphemeralContainers) || anyNamed(s.Volumes, a.Volumes) ||
		anyNamed(s.ImagePullSecrets, a.ImagePullSecrets) {
		return false
	}
	s.Containers = prependCopies(s.Containers, a.Containers)
	s.InitContainers = prependCopies(s.InitContainers, a.InitContainers)
	s.EphemeralContainers = prependCopies(s.EphemeralContainers, a.EphemeralContainers)
	s.Volumes = prependCopies(s.Volumes, a.Volumes)
	s.ImagePullSecrets = prependCopies(s.ImagePullSecrets, a.ImagePullSecrets)
	pod.Labels = mergeStrings(pod.Labels, add.Labels)
	pod.Annotations = mergeStrings(pod.Annotations, add.Annotations)
	return true
}

// named is a list item with a name: the merge key of the PodSpec lists.
type named interface {
	corev1.Container | corev1.EphemeralContainer | corev1.Volume | corev1.LocalObjectReference
}

func nameOf[T named](v *T) string {
	switch t := any(v).(type) {
	case *corev1.Container:
		return t.Name
	case *corev1.EphemeralContainer:
		return t.Name
	case *corev1.Volume:
		return t.Name
	case *corev1.LocalObjectReference:
		return t.Name
	}
	return ""
}

func anyNamed[T named](have, add []T) bool {
	for i := range add {
		n := nameOf(&add[i])
		for j := range have {
			if nameOf(&have[j]) == n {
				return true
			}
		}
	}
	return false
}

// prependCopies returns deep copies of add followed by list.
func prependCopies[T named](list, add []T) []T {
	if len(add) == 0 {
		return list
	}
	// In place when list has room (decoded lists often do): shift the
	// list up, then copy add in front; a hostile pod's thousands of
	// containers are not copied to a new list.
	n := len(list)
	list = slices.Grow(list, len(add))[:n+len(add)]
	copy(list[len(add):], list[:n])
	for i := range add {
		list[i] = deepCopyItem(add[i])
	}
	return list
}

func deepCopyItem[T named](v T) T {
	switch t := any(&v).(type) {
	case *corev1.Container:
		return any(*t.DeepCopy()).(T)
	case *corev1.EphemeralContainer:
		return any(*t.DeepCopy()).(T)
	case *corev1.Volume:
		return any(*t.DeepCopy()).(T)
	}
	return v // LocalObjectReference holds only a string
}

func mergeStrings(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// hasReplace reports whether a patch list carries a {$patch: replace} item.
func hasReplace(items []any) bool {
	for _, it := range items {
		if m, ok := it.(map[string]any); ok && m["$patch"] == "replace" {
			return true
		}
	}
	return false
}

// mergeContainer returns base with override strategically merged on top.
func mergeContainer(base corev1.Container, override map[string]any) (corev1.Container, error) {
	bt, err := preserve.Value(base)
	if err != nil {
		return base, err
	}
	merged, err := strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(bt.(map[string]any), override, containerSchema)
	if err != nil {
		return base, err
	}
	var out corev1.Container
	if err := fromTree(merged, &out); err != nil {
		return base, err
	}
	return out, nil
}
