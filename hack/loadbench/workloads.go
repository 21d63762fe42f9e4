package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// workload is a set of review bodies that loadbench sends in turn.
type workload struct {
	name   string
	bodies [][]byte
}

// distinct returns n different workloads' pods, drawn from a generator
// seeded with seed: names, namespaces, labels, 1 to 4 containers with
// ports, and, for about one workload in four, proxy resource or traffic
// annotations, as a cluster's mix of Deployments has them. Each workload
// has 1 to 5 replicas whose reviews follow each other, as a ReplicaSet
// creates its pods; they differ only in their review's uid.
func distinct(n int, seed uint64) workload {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) //nolint:gosec // a reproducible mix, not a secret
	w := workload{name: fmt.Sprintf("mix-%d", n)}
	for i := range n {
		pod := mixPod(r, i)
		for range 1 + r.IntN(5) {
			w.bodies = append(w.bodies, review(pod, len(w.bodies)))
		}
	}
	return w
}

// annotationChoices are the injection annotations a generated workload
// may carry, with the values it picks from.
var annotationChoices = []struct {
	key    string
	values []string
}{
	{"sidecar.istio.io/proxyCPU", []string{"50m", "100m", "200m", "500m"}},
	{"sidecar.istio.io/proxyMemory", []string{"64Mi", "128Mi", "256Mi"}},
	{"traffic.sidecar.istio.io/excludeOutboundPorts", []string{"5432", "6379", "9092,9093"}},
	{"proxy.istio.io/config", []string{`{"holdApplicationUntilProxyStarts": true}`, `{"concurrency": 2}`}},
}

func mixPod(r *rand.Rand, i int) []byte {
	ctrl := true
	name := fmt.Sprintf("svc-%d", i)
	hash := fmt.Sprintf("%010x", r.Uint64()&0xffffffffff)
	p := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: name + "-" + hash + "-", Namespace: fmt.Sprintf("team-%d", r.IntN(40)),
			Labels: map[string]string{"app": name, "version": fmt.Sprintf("v%d", 1+r.IntN(3)), "pod-template-hash": hash,
				"team": fmt.Sprintf("t%d", r.IntN(12))},
			Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
				Name: name + "-" + hash, UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)), Controller: &ctrl}},
		},
	}
	if r.IntN(4) == 0 {
		for _, a := range annotationChoices {
			if r.IntN(2) == 0 {
				p.Annotations[a.key] = a.values[r.IntN(len(a.values))]
			}
		}
	}
	for c := range 1 + r.IntN(4) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("c%d", c), Image: fmt.Sprintf("registry.example/%s-%d:1.%d", name, c, r.IntN(20)),
			Ports: []corev1.ContainerPort{{Name: fmt.Sprintf("http-%d", c), ContainerPort: int32(8080 + c)}}, //nolint:gosec // c < 4
			Env:   []corev1.EnvVar{{Name: "SERVICE", Value: name}},
		})
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}
