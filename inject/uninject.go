package inject

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Uninject removes an injection from pod, in place: the containers,
// volumes and pull secrets its status annotation lists, the user's own
// container definitions put back, rewritten probes restored, and the labels,
// annotations and fields injection changed restored. A pod without the
// status annotation is left unchanged. For a pod injected by meshinject,
// Uninject(Inject(x)) equals x.
func Uninject(pod *corev1.Pod) error {
	raw, ok := pod.Annotations[AnnotationStatus]
	if !ok {
		return nil
	}
	var st Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return fieldError(AnnotationStatus, raw, err)
	}
	var rec record
	if r, ok := pod.Annotations[AnnotationUninject]; ok {
		if err := json.Unmarshal([]byte(r), &rec); err != nil {
			return fieldError(AnnotationUninject, r, err)
		}
	}
	var ov overrides
	if o, ok := pod.Annotations[AnnotationOverrides]; ok {
		if err := json.Unmarshal([]byte(o), &ov); err != nil {
			return fieldError(AnnotationOverrides, o, err)
		}
	}

	if err := restoreProbes(pod, rec.PortNames); err != nil {
		return err
	}

	// Overrides are recorded without image "auto" (Istio's format): a user
	// container with no image had "auto".
	for _, list := range [][]corev1.Container{ov.Containers, ov.InitContainers} {
		for i := range list {
			if list[i].Image == "" {
				list[i].Image = AutoImage
			}
		}
	}
	// A user's istio-proxy made a native sidecar goes back to containers.
	for i := 0; i < len(ov.InitContainers); i++ {
		c := ov.InitContainers[i]
		if _, fromContainers := rec.Positions["containers/"+c.Name]; fromContainers {
			if _, wasInit := rec.Positions["initContainers/"+c.Name]; !wasInit {
				ov.Containers = append(ov.Containers, c)
				ov.InitContainers = slices.Delete(ov.InitContainers, i, i+1)
				i--
			}
		}
	}
	pod.Spec.InitContainers = restoreContainers(removeContainers(pod.Spec.InitContainers, st.InitContainers), ov.InitContainers, rec.Positions, "initContainers/")
	pod.Spec.Containers = restoreContainers(removeContainers(pod.Spec.Containers, st.Containers), ov.Containers, rec.Positions, "containers/")
	pod.Spec.Volumes = removeNamed(pod.Spec.Volumes, st.Volumes, func(v *corev1.Volume) string { return v.Name })
	pod.Spec.ImagePullSecrets = removeNamed(pod.Spec.ImagePullSecrets, st.ImagePullSecrets, func(r *corev1.LocalObjectReference) string { return r.Name })

	if err := restoreFields(reflect.ValueOf(&pod.Spec).Elem(), specFields, rec.Spec, "spec"); err != nil {
		return err
	}
	if err := restoreFields(reflect.ValueOf(&pod.ObjectMeta).Elem(), metaFields, rec.Metadata, "metadata"); err != nil {
		return err
	}
	pod.Labels = restoreMap(pod.Labels, rec.Labels)
	pod.Annotations = restoreMap(pod.Annotations, rec.Annotations)
	for k := range internalAnnotations {
		delete(pod.Annotations, k)
	}
	if len(pod.Labels) == 0 {
		pod.Labels = nil
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	return nil
}

func removeContainers(list []corev1.Container, names []string) []corev1.Container {
	return removeNamed(list, names, func(c *corev1.Container) string { return c.Name })
}

func removeNamed[T any](list []T, names []string, name func(*T) string) []T {
	if len(names) == 0 {
		return list
	}
	out := list[:0:0]
	for i := range list {
		if !slices.Contains(names, name(&list[i])) {
			out = append(out, list[i])
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// restoreContainers puts the user's own container definitions back at their
// recorded positions.
func restoreContainers(list, users []corev1.Container, positions map[string]int, prefix string) []corev1.Container {
	if len(users) == 0 {
		return list
	}
	sort.SliceStable(users, func(i, j int) bool {
		return positionOf(positions, prefix+users[i].Name) < positionOf(positions, prefix+users[j].Name)
	})
	for _, u := range users {
		i := positionOf(positions, prefix+u.Name)
		if i > len(list) {
			i = len(list)
		}
		list = append(list[:i], append([]corev1.Container{u}, list[i:]...)...)
	}
	return list
}

func positionOf(positions map[string]int, key string) int {
	if i, ok := positions[key]; ok {
		return i
	}
	return int(^uint(0) >> 1)
}

// restoreFields sets each recorded field of target back to its original
// JSON value (null restores the zero value).
func restoreFields(target reflect.Value, index map[string]int, fields map[string]json.RawMessage, part string) error {
	for k, raw := range fields {
		fi, ok := index[k]
		if !ok {
			return fmt.Errorf("restore %s.%s: no such field", part, k)
		}
		f := target.Field(fi)
		nv := reflect.New(f.Type())
		if err := json.Unmarshal(raw, nv.Interface()); err != nil {
			return fmt.Errorf("restore %s.%s: %w", part, k, err)
		}
		f.Set(nv.Elem())
	}
	return nil
}
