// Package benchpods builds the pods that meshinject's benchmarks inject:
// the same small, medium and large shapes for the engine benchmarks and the
// webhook load benchmark, so their numbers compare.
package benchpods

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pod is a named benchmark pod as JSON.
type Pod struct {
	Name string
	JSON []byte
}

// All returns the small (1 container), medium (3 containers with probes,
// 30 env, 3 volumes) and large (10 containers x 40 env, 12 volumes, 2 init
// containers) pods, each owned by a ReplicaSet.
func All() []Pod {
	return []Pod{
		{"small", build(1, 0, 0, 0, false)},
		{"medium", build(3, 10, 3, 0, true)},
		{"large", build(10, 40, 12, 2, true)},
	}
}

// build builds a pod with containers app containers of env variables
// each, volumes volumes and inits init containers, as a ReplicaSet's pod.
func build(containers, env, volumes, inits int, probes bool) []byte {
	ctrl := true
	p := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-6b746f74dc-", Namespace: "shop",
			Labels:      map[string]string{"app": "web", "version": "v1", "pod-template-hash": "6b746f74dc"},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
				Name: "web-6b746f74dc", UID: "3f1c1b1e-0000-4000-8000-000000000001", Controller: &ctrl}},
		},
	}
	for i := range volumes {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: fmt.Sprintf("vol-%d", i),
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprintf("cm-%d", i)}}}})
	}
	mk := func(name string, port int32) corev1.Container {
		c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1.0",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}
		for j := range env {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", j), Value: fmt.Sprintf("value-%d", j)})
		}
		for j := range volumes {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: fmt.Sprintf("vol-%d", j), MountPath: fmt.Sprintf("/etc/%s/%d", name, j)})
		}
		if probes {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
		}
		return c
	}
	for i := range containers {
		p.Spec.Containers = append(p.Spec.Containers, mk(fmt.Sprintf("c%d", i), int32(8080+i)))
	}
	for i := range inits {
		c := mk(fmt.Sprintf("init%d", i), int32(9080+i))
		c.ReadinessProbe, c.LivenessProbe, c.Ports = nil, nil, nil
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}
