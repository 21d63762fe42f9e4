package webhook

import (
	"context"
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

// NodeVersions is the native-sidecar "auto" policy: a pod gets a native
// sidecar when its scheduled node's kubelet (spec.nodeName) is at least
// 1.33, or, for an unscheduled pod, when every known node's is. It reads
// nodes from an informer cache holding only names and kubelet versions;
// nothing on the admission path calls the API server.
type NodeVersions struct {
	mu       sync.RWMutex
	versions map[string]*version.Version // node name → kubelet version (nil: unparsable)
	synced   cache.InformerSynced
}

// NewNodeVersions starts a node informer on client and returns the policy.
// It stops with ctx.
func NewNodeVersions(ctx context.Context, client kubernetes.Interface) (*NodeVersions, error) {
	nv := &NodeVersions{versions: map[string]*version.Version{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimNode))
	inf := factory.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nv.set,
		UpdateFunc: func(_, n any) { nv.set(n) },
		DeleteFunc: nv.remove,
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	nv.synced = inf.HasSynced
	factory.Start(ctx.Done())
	return nv, nil
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

func (nv *NodeVersions) set(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	v, err := version.ParseGeneric(n.Status.NodeInfo.KubeletVersion)
	if err != nil {
		v = nil
	}
	nv.mu.Lock()
	nv.versions[n.Name] = v
	nv.mu.Unlock()
}

func (nv *NodeVersions) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		nv.mu.Lock()
		delete(nv.versions, n.Name)
		nv.mu.Unlock()
	}
}

// WaitForSync blocks until the node cache is filled or ctx is done.
func (nv *NodeVersions) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), nv.synced)
}

// NativeSidecars implements NativeSidecarPolicy.
func (nv *NodeVersions) NativeSidecars(pod *corev1.Pod) bool {
	nv.mu.RLock()
	defer nv.mu.RUnlock()
	if pod.Spec.NodeName != "" {
		if v, ok := nv.versions[pod.Spec.NodeName]; ok {
			return v != nil && v.AtLeast(nativeSidecarMinKubelet)
		}
	}
	for _, v := range nv.versions {
		if v == nil || !v.AtLeast(nativeSidecarMinKubelet) {
			return false
		}
	}
	return true
}
