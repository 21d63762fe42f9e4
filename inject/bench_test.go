package inject

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshinject/meshinject/config"
)

// benchPod builds a pod with containers app containers of env variables
// each, volumes volumes and inits init containers, as a ReplicaSet's pod.
func benchPod(containers, env, volumes, inits int, probes bool) []byte {
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

var benchPods = []struct {
	name string
	json []byte
}{
	{"small", benchPod(1, 0, 0, 0, false)},
	{"medium", benchPod(3, 10, 3, 0, true)}, // 3 containers x 10 env = 30 env
	{"large", benchPod(10, 40, 12, 2, true)},
}

// BenchmarkFloor only decodes the pod JSON and encodes it again: the
// least any admission of this pod costs.
func BenchmarkFloor(b *testing.B) {
	for _, bp := range benchPods {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.json)))
			for b.Loop() {
				var p corev1.Pod
				if err := json.Unmarshal(bp.json, &p); err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(&p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInject decodes the pod JSON, injects it and encodes the result:
// the floor's work plus the engine's. Replicas of one workload render
// identically, so after the first iteration templates come from the render
// cache; BenchmarkInjectUncached measures every render parsed afresh.
func BenchmarkInject(b *testing.B) {
	benchInject(b, 0)
}

// BenchmarkInjectUncached is BenchmarkInject with the render cache off.
func BenchmarkInjectUncached(b *testing.B) {
	benchInject(b, -1)
}

func benchInject(b *testing.B, cacheSize int) {
	e, err := New(Options{Config: mustConfig(b, config.Sources{}), RenderCacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range benchPods {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.json)))
			for b.Loop() {
				var p corev1.Pod
				if err := json.Unmarshal(bp.json, &p); err != nil {
					b.Fatal(err)
				}
				res, err := e.Inject(Request{Pod: &p, Namespace: "shop"})
				if err != nil || res.Skipped {
					b.Fatal(err, res.Reason)
				}
				if _, err := json.Marshal(res.Pod); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVsFloor alternates the floor (decode + encode) and a full
// injection (decode + inject + encode) of the same pod within every
// iteration, so both see the same machine state, and reports each one's
// time per op and their ratio (x-floor).
func BenchmarkVsFloor(b *testing.B) {
	e, err := New(Options{Config: mustConfig(b, config.Sources{})})
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range benchPods {
		b.Run(bp.name, func(b *testing.B) {
			var floor, inject time.Duration
			for b.Loop() {
				t0 := time.Now()
				var p corev1.Pod
				if err := json.Unmarshal(bp.json, &p); err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(&p); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				var q corev1.Pod
				if err := json.Unmarshal(bp.json, &q); err != nil {
					b.Fatal(err)
				}
				res, err := e.Inject(Request{Pod: &q, Namespace: "shop"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(res.Pod); err != nil {
					b.Fatal(err)
				}
				floor += t1.Sub(t0)
				inject += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(floor.Nanoseconds())/n, "floor-ns/op")
			b.ReportMetric(float64(inject.Nanoseconds())/n, "inject-ns/op")
			b.ReportMetric(float64(inject)/float64(floor), "x-floor")
		})
	}
}
