package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWorkloadOf(t *testing.T) {
	t.Parallel()
	ctrl := true
	owned := func(kind, apiVersion, name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, APIVersion: apiVersion, Name: name, Controller: &ctrl}}}}
	}
	tests := map[string]struct {
		pod      *corev1.Pod
		kind     string
		name     string
		ownerURI string
	}{
		"deployment via replicaset": {owned("ReplicaSet", "apps/v1", "web-7d4f9c", map[string]string{"pod-template-hash": "7d4f9c"}), "Deployment", "web", "kubernetes://apis/apps/v1/namespaces/ns/deployments/web"},
		"bare replicaset":           {owned("ReplicaSet", "apps/v1", "web", nil), "ReplicaSet", "web", "kubernetes://apis/apps/v1/namespaces/ns/replicasets/web"},
		"cronjob via job":           {owned("Job", "batch/v1", "report-29345040", nil), "CronJob", "report", "kubernetes://apis/batch/v1/namespaces/ns/cronjobs/report"},
		"plain job":                 {owned("Job", "batch/v1", "migrate", nil), "Job", "migrate", "kubernetes://apis/batch/v1/namespaces/ns/jobs/migrate"},
		"statefulset":               {owned("StatefulSet", "apps/v1", "db", nil), "StatefulSet", "db", "kubernetes://apis/apps/v1/namespaces/ns/statefulsets/db"},
		"bare pod":                  {&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "solo"}}, "Pod", "solo", "kubernetes://apis/v1/namespaces/ns/pods/solo"},
		"generated name":            {&corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "solo-"}}, "Pod", "solo", "kubernetes://apis/v1/namespaces/ns/pods/solo"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := WorkloadOf(tc.pod)
			if w.Kind != tc.kind || w.Name != tc.name {
				t.Errorf("WorkloadOf = %s %s, want %s %s", w.Kind, w.Name, tc.kind, tc.name)
			}
			if got := ownerURI(w, "ns"); got != tc.ownerURI {
				t.Errorf("ownerURI = %s, want %s", got, tc.ownerURI)
			}
		})
	}
}
