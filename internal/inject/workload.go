package inject

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cronJobName matches the Jobs a CronJob creates: <cronjob>-<8 to 10 digits>
// (the scheduled time in minutes since the epoch).
var cronJobName = regexp.MustCompile(`^(.+)-\d{8,10}$`)

// WorkloadOf returns the workload that owns pod, as Istio names it: the Deployment behind a
// ReplicaSet with a pod-template-hash, the CronJob behind a Job, the
// controller owner, or the pod itself.
func WorkloadOf(pod *corev1.Pod) Workload {
	var ref *metav1.OwnerReference
	for i := range pod.OwnerReferences {
		r := &pod.OwnerReferences[i]
		if r.Controller != nil && *r.Controller {
			ref = r
			break
		}
	}
	if ref == nil {
		name := pod.Name
		if name == "" {
			name = strings.TrimSuffix(pod.GenerateName, "-")
		}
		return Workload{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Name: name}
	}
	w := Workload{TypeMeta: metav1.TypeMeta{APIVersion: ref.APIVersion, Kind: ref.Kind}, Name: ref.Name}
	switch ref.Kind {
	case "ReplicaSet":
		if hash := pod.Labels["pod-template-hash"]; hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
			w = Workload{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, Name: strings.TrimSuffix(ref.Name, "-"+hash)}
		}
	case "Job":
		if m := cronJobName.FindStringSubmatch(ref.Name); m != nil {
			w = Workload{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"}, Name: m[1]}
		}
	}
	return w
}

// templatePaths are where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// TemplatePath returns where objects of kind keep their pod template (nil
// for a Pod, which is its own template); ok is false for other kinds.
func TemplatePath(kind string) (path []string, ok bool) {
	if kind == "Pod" {
		return nil, true
	}
	path, ok = templatePaths[kind]
	return path, ok
}

// ownerURI is the ISTIO_META_OWNER value for w in namespace.
func ownerURI(w Workload, namespace string) string {
	return "kubernetes://apis/" + w.APIVersion + "/namespaces/" + namespace + "/" + strings.ToLower(w.Kind) + "s/" + w.Name
}
