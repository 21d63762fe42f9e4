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
// touched fields are noted in rec (for Uninject).
func overlay(pod *corev1.Pod, patch map[string]any, rec *record) error {
	type sparseList struct{ matched map[int]bool }
	type part struct {
		name   string
		target reflect.Value
		index  map[string]int
		keys   []string
		sparse map[string]*sparseList
		full   bool
	}
	var parts []*part
	orig := map[string]any{}
	for top, pv := range patch {
		var p *part
		switch top {
		case "metadata":
			p = &part{name: top, target: reflect.ValueOf(&pod.ObjectMeta).Elem(), index: metaFields}
		case "spec":
			p = &part{name: top, target: reflect.ValueOf(&pod.Spec).Elem(), index: specFields}
		case "apiVersion", "kind":
			continue
		default:
			return fmt.Errorf("unsupported top-level field %q in template output", top)
		}
		pm, ok := pv.(map[string]any)
		if !ok {
			if pv == nil {
				continue
			}
			return fmt.Errorf("template output field %s is not an object", top)
		}
		p.sparse = map[string]*sparseList{}
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
		o := map[string]any{}
		if p.full {
			tree, err := preserve.Value(p.target.Addr().Interface())
			if err != nil {
				return err
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
				return fmt.Errorf("template output: unknown field %s.%s", top, k)
			}
			fv := p.target.Field(fi)
			items, isList := pm[k].([]any)
			if !p.full && top == "spec" && keyedLists[k] && isList && !fullKeys[k] && !hasReplace(items) {
				names := map[string]bool{}
				for _, it := range items {
					if m, ok := it.(map[string]any); ok {
						if n, ok := m["name"].(string); ok {
							names[n] = true
						}
					}
				}
				sl := &sparseList{matched: map[int]bool{}}
				var origItems []any
				for i := range fv.Len() {
					if names[fv.Index(i).FieldByName("Name").String()] {
						t, err := preserve.Value(fv.Index(i).Interface())
						if err != nil {
							return err
						}
						origItems = append(origItems, t)
						sl.matched[i] = true
					}
				}
				if origItems != nil {
					o[k] = origItems
				}
				p.sparse[k] = sl
				continue
			}
			if p.full {
				continue
			}
			var t any
			if !fv.IsZero() {
				var err error
				if t, err = preserve.Value(fv.Interface()); err != nil {
					return err
				}
				o[k] = t
			}
			if !(top == "metadata" && (k == "labels" || k == "annotations")) {
				rec.touch(top, k, t)
			}
		}
		orig[top] = o
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil
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
		src := reflect.ValueOf(&partial.ObjectMeta).Elem()
		if p.name == "spec" {
			src = reflect.ValueOf(&partial.Spec).Elem()
		}
		for _, k := range p.keys {
			fi := p.index[k]
			nv := src.Field(fi)
			if sl, ok := p.sparse[k]; ok {
				old := p.target.Field(fi)
				out := reflect.MakeSlice(nv.Type(), 0, nv.Len()+old.Len()-len(sl.matched))
				out = reflect.AppendSlice(out, nv)
				for i := range old.Len() {
					if !sl.matched[i] {
						out = reflect.Append(out, old.Index(i))
					}
				}
				p.target.Field(fi).Set(out)
				continue
			}
			p.target.Field(fi).Set(nv)
		}
	}
	return nil
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
