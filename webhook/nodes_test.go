package webhook

import (
	"testing"
	"time"

	"github.com/meshinject/meshinject/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name, kubelet string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet}}}
}

func TestNodeVersions(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(node("new", "v1.33.1"), node("old", "v1.31.4"))
	nv, err := NewNodeVersions(t.Context(), client)
	if err != nil {
		t.Fatal(err)
	}
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
	nv, err := NewNodeVersions(t.Context(), fake.NewClientset())
	if err != nil {
		t.Fatal(err)
	}
	nv.WaitForSync(t.Context())
	if !nv.NativeSidecars(&corev1.Pod{}) {
		t.Error("a cluster without nodes should get native sidecars")
	}
}
