package nodepolicy

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshinject/meshinject/test/testutil"
)

// start runs a's informer until the test ends.
func start(t *testing.T, a *Auto) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func node(name, kubelet string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet}}}
}

func TestNodeVersions(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(node("new", "v1.33.1"), node("old", "v1.31.4"))
	nv, err := New(client)
	if err != nil {
		t.Fatal(err)
	}
	start(t, nv)
	if !nv.WaitForSync(t.Context()) {
		t.Fatal("cache did not sync")
	}
	unscheduled := &corev1.Pod{}
	onNew := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "new"}}
	onOld := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "old"}}
	if nv.NativeSidecars(unscheduled) || !nv.NativeSidecars(onNew) || nv.NativeSidecars(onOld) {
		t.Errorf("mixed cluster: unscheduled %v, new %v, old %v", nv.NativeSidecars(unscheduled), nv.NativeSidecars(onNew), nv.NativeSidecars(onOld))
	}
	// Upgrading the old node turns native sidecars on for everyone.
	if _, err := client.CoreV1().Nodes().Update(t.Context(), node("old", "v1.34.0"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return nv.NativeSidecars(unscheduled) })
	// The cache holds nothing but names and kubelet versions.
	obj, err := trimNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.33.0", OSImage: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	n := obj.(*corev1.Node)
	if n.Labels != nil || n.Spec.PodCIDR != "" || n.Status.NodeInfo.OSImage != "" || n.Status.NodeInfo.KubeletVersion != "v1.33.0" {
		t.Errorf("trimmed node keeps too much: %+v", n)
	}
}

func TestNodeVersionsEmptyCluster(t *testing.T) {
	t.Parallel()
	nv, err := New(fake.NewClientset())
	if err != nil {
		t.Fatal(err)
	}
	start(t, nv)
	nv.WaitForSync(t.Context())
	if !nv.NativeSidecars(&corev1.Pod{}) {
		t.Error("a cluster without nodes should get native sidecars")
	}
}

// TestNotReadyBeforeSync: until the node list arrives, Check fails and
// every pod gets classic sidecars (they run on any kubelet); then the
// nodes decide.
func TestNotReadyBeforeSync(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(node("new", "v1.34.0"))
	release := make(chan struct{})
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return false, nil, nil
	})
	a, err := New(client)
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	time.Sleep(100 * time.Millisecond)
	if err := a.Check(); err == nil {
		t.Error("Check passed before the node cache synced")
	}
	if a.NativeSidecars(&corev1.Pod{}) {
		t.Error("native sidecars before the node cache synced")
	}
	close(release)
	testutil.Eventually(t, 10*time.Second, func() bool { return a.Check() == nil })
	if !a.NativeSidecars(&corev1.Pod{}) {
		t.Error("no native sidecars on a cluster of 1.34 kubelets once synced")
	}
}
