package inject

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/internal/inject/podmerge"
)

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
