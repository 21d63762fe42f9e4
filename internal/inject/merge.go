package inject

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/internal/inject/podmerge"
)

// additiveLists are the PodSpec lists addOverlay adds to: those merged by
// name.
var additiveLists = map[string]bool{
	"containers": true, "initContainers": true, "ephemeralContainers": true,
	"volumes": true, "imagePullSecrets": true,
}

// addOverlay is the merge for an additive template output (see rendered):
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

// mergeContainer returns base with override, a container as a JSON tree,
// strategically merged on top.
func mergeContainer(base corev1.Container, override map[string]any) (corev1.Container, error) {
	pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{base}}}
	item := maps.Clone(override)
	item["name"] = base.Name
	if err := podmerge.Merge(&pod, map[string]any{"spec": map[string]any{"containers": []any{item}}}, nil); err != nil {
		return base, err
	}
	if len(pod.Spec.Containers) != 1 {
		return base, fmt.Errorf("merging container %s gave %d containers", base.Name, len(pod.Spec.Containers))
	}
	return pod.Spec.Containers[0], nil
}
