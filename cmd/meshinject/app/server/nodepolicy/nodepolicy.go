// Package nodepolicy is the native-sidecar "auto" policy: it follows the
// kubelet versions of the cluster's nodes through an informer cache.
package nodepolicy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// nativeSidecarMinKubelet is the kubelet version from which Istio turns
// native sidecars on by default (1.33: sidecar containers are GA-stable
// there, and their shutdown ordering is fixed).
var nativeSidecarMinKubelet = version.MajorMinor(1, 33)

// Auto is the native-sidecar "auto" policy: a pod gets a native sidecar
// when its scheduled node's kubelet (spec.nodeName) is at least 1.33, or,
// for an unscheduled pod, when every known node's is. It reads nodes from
// an informer cache holding only names and kubelet versions; nothing on
// the admission path calls the API server. Until the cache has synced it
// answers no (classic sidecars run on every kubelet) and Check fails, so
// readiness keeps reviews away.
type Auto struct {
	mu       sync.RWMutex
	versions map[string]*version.Version // node name → kubelet version (nil: unparsable)
	factory  informers.SharedInformerFactory
	synced   cache.InformerSynced
}

// New returns the policy for the nodes client lists; Start runs it.
func New(client kubernetes.Interface) (*Auto, error) {
	a := &Auto{versions: map[string]*version.Version{}}
	a.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimNode))
	inf := a.factory.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.set,
		UpdateFunc: func(_, n any) { a.set(n) },
		DeleteFunc: a.remove,
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	a.synced = inf.HasSynced
	return a, nil
}

// Start runs the node informer until ctx ends, then waits for its
// goroutines to stop.
func (a *Auto) Start(ctx context.Context) error {
	a.factory.Start(ctx.Done())
	<-ctx.Done()
	a.factory.Shutdown()
	return nil
}

// errNotSynced is Check before the node cache has synced.
var errNotSynced = errors.New("the node cache has not synced yet (native sidecars: auto)")

// Check is a readiness check: nil once the node cache has synced.
func (a *Auto) Check() error {
	if !a.synced() {
		return errNotSynced
	}
	return nil
}

// WaitForSync blocks until the node cache is filled or ctx is done.
func (a *Auto) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), a.synced)
}

// trimNode keeps only what the policy reads, so the cache stays small.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion},
		Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: n.Status.NodeInfo.KubeletVersion}},
	}, nil
}

func (a *Auto) set(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	v, err := version.ParseGeneric(n.Status.NodeInfo.KubeletVersion)
	if err != nil {
		v = nil
	}
	a.mu.Lock()
	a.versions[n.Name] = v
	a.mu.Unlock()
}

func (a *Auto) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		a.mu.Lock()
		delete(a.versions, n.Name)
		a.mu.Unlock()
	}
}

// NativeSidecars implements webhook.NativeSidecarPolicy.
func (a *Auto) NativeSidecars(pod *corev1.Pod) bool {
	if !a.synced() {
		return false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if pod.Spec.NodeName != "" {
		if v, ok := a.versions[pod.Spec.NodeName]; ok {
			return v != nil && v.AtLeast(nativeSidecarMinKubelet)
		}
	}
	for _, v := range a.versions {
		if v == nil || !v.AtLeast(nativeSidecarMinKubelet) {
			return false
		}
	}
	return true
}
