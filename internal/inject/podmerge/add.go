package podmerge

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The additive path: most template output only adds (Istio's sidecar and
// gateway templates do), and merging it is putting copies of its items in
// front, on the typed pod, without converting the pod to a JSON tree
// (docs/performance.md, "Speed code").

// Additive reports whether patch, a template's output as a JSON tree, only
// sets metadata labels and annotations (strings) and adds items to the
// lists merged by name, with no strategic-merge directives or nulls: then
// Add can merge its typed form.
func Additive(patch map[string]any) bool {
	for k, v := range patch {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		switch k {
		case "metadata":
			for mk, mv := range m {
				if mk != "labels" && mk != "annotations" {
					return false
				}
				vals, ok := mv.(map[string]any)
				if !ok {
					return false
				}
				for _, s := range vals {
					if _, ok := s.(string); !ok {
						return false
					}
				}
			}
		case "spec":
			for sk, sv := range m {
				items, ok := sv.([]any)
				if !keyedLists[sk] || !ok {
					return false
				}
				for _, it := range items {
					if !directiveFree(it) {
						return false
					}
				}
			}
		default:
			return false
		}
	}
	return true
}

// directiveFree reports whether v holds no $-directive keys and no nulls.
func directiveFree(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case map[string]any:
		for k, c := range t {
			if strings.HasPrefix(k, "$") || !directiveFree(c) {
				return false
			}
		}
	case []any:
		for _, c := range t {
			if !directiveFree(c) {
				return false
			}
		}
	}
	return true
}

// Add is Merge for an additive patch (Additive) in its typed form:
// when none of its list items is already in pod, the strategic merge
// reduces to putting copies of its items first and setting its labels and
// annotations, which this does on the typed pod directly. It returns false,
// changing nothing, when an item is already present.
func Add(pod *corev1.Pod, add *corev1.Pod) bool {
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
