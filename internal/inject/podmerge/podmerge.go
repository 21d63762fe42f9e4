// Package podmerge merges a template's output, a partial Pod as a JSON
// tree, into a typed Pod with Kubernetes' strategic merge patch for
// corev1.Pod (Merge), converting only the metadata and spec fields the
// patch names. It is the engine's merge: of every template into the pod,
// and of a user's container over a template's (Istio's
// proxy.istio.io/overrides). Output that only adds (Additive) takes a
// shorter path on the typed pod (Add), with the same result.
package podmerge

import (
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/meshinject/meshinject/internal/jsontree"
)

// touched is told each field a merge sets as a whole (part is "metadata"
// or "spec", field its JSON name) with its value before the merge as a
// JSON tree, nil when unset. Labels and annotations, merged key by key,
// and lists merged by name are not reported.
type touched func(part, field string, before any)

// Set-once lookup tables and schemas.
var (
	podSchema  = mustSchema(&corev1.Pod{})
	metaFields = jsonFieldIndex(reflect.TypeFor[metav1.ObjectMeta]())
	specFields = jsonFieldIndex(reflect.TypeFor[corev1.PodSpec]())
	// keyedLists are the PodSpec lists merged item by item by name.
	keyedLists = map[string]bool{
		"containers": true, "initContainers": true, "ephemeralContainers": true,
		"volumes": true, "imagePullSecrets": true,
	}
)

func mustSchema(v any) strategicpatch.LookupPatchMeta {
	s, err := strategicpatch.NewPatchMetaFromStruct(v)
	if err != nil {
		panic(fmt.Sprintf("podmerge: strategic merge schema for %T: %v", v, err))
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

// Merge merges patch, a partial Pod, into pod. Items the patch contributes
// come first in each list, followed by the pod's other items in their
// order. touched, when not nil, is told the fields set as a whole. It runs
// in three steps: plan (what the patch touches, and its current values as
// a tree), merge (Kubernetes' strategic merge of the patch into those
// values) and splice (the merged fields back into pod). patch is not
// changed.
func Merge(pod *corev1.Pod, patch map[string]any, touched touched) error {
	if touched == nil {
		touched = func(string, string, any) {}
	}
	patch = jsontree.Copy(patch).(map[string]any) // the strategic merge edits its patch
	parts, orig, err := plan(pod, patch, touched)
	if err != nil || len(parts) == 0 {
		return err
	}
	merged, err := strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(orig, patch, podSchema)
	if err != nil {
		return fmt.Errorf("merge template output: %w", err)
	}
	var partial corev1.Pod
	if err := jsontree.FromTree(merged, &partial); err != nil {
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
	// full is a patch that replaces or retains keys of the whole object.
	full bool
}

// plan returns the parts patch touches and their current values,
// as the tree the strategic merge takes.
func plan(pod *corev1.Pod, patch map[string]any, touched touched) ([]*overlayPart, map[string]any, error) {
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
		o, err := p.original(pm, touched)
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
func (p *overlayPart) original(pm map[string]any, touched touched) (map[string]any, error) {
	fullKeys := p.keysOf(pm)
	o := map[string]any{}
	if p.full {
		tree, err := jsontree.Value(p.target.Addr().Interface())
		if err != nil {
			return nil, err
		}
		o = tree.(map[string]any)
		p.keys = p.keys[:0]
		for k := range p.index {
			p.keys = append(p.keys, k)
		}
	}
	for _, k := range p.keys {
		fi, ok := p.index[k]
		if !ok {
			return nil, fmt.Errorf("template output: unknown field %s.%s", p.name, k)
		}
		fv := p.target.Field(fi)
		if p.full {
			continue
		}
		var t any
		if !fv.IsZero() {
			var err error
			if t, err = jsontree.Value(fv.Interface()); err != nil {
				return nil, err
			}
			o[k] = t
		}
		if !(p.name == "metadata" && (k == "labels" || k == "annotations")) && !mergedByName(p.name, k, pm[k], fullKeys) {
			touched(p.name, k, t)
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

// splice sets the part's fields from the merged partial pod.
func (p *overlayPart) splice(partial *corev1.Pod) {
	src := reflect.ValueOf(&partial.ObjectMeta).Elem()
	if p.name == "spec" {
		src = reflect.ValueOf(&partial.Spec).Elem()
	}
	for _, k := range p.keys {
		fi := p.index[k]
		p.target.Field(fi).Set(src.Field(fi))
	}
}

// mergedByName reports whether the patch's value v of field k of part is
// a list merged item by item by name (not ordered, replaced or deleted
// from as a whole), which the merge does not report as touched.
func mergedByName(part, k string, v any, fullKeys map[string]bool) bool {
	items, isList := v.([]any)
	return part == "spec" && keyedLists[k] && isList && !fullKeys[k] && !hasReplace(items)
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
