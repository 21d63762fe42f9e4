package podmerge

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// TestMergeMatchesStrategicMerge checks that the sparse merge
// gives what a strategic merge patch of the whole pod gives, up to the
// order of name-keyed lists (Merge puts the patch's items first).
func TestMergeMatchesStrategicMerge(t *testing.T) {
	t.Parallel()
	patches := map[string]string{
		"add containers and volumes": `{"metadata":{"labels":{"x":"1"}},"spec":{"containers":[{"name":"proxy","image":"p"}],"volumes":[{"name":"v","emptyDir":{}}]}}`,
		"merge into existing":        `{"spec":{"containers":[{"name":"app","env":[{"name":"E","value":"1"}]}]}}`,
		"delete an item":             `{"spec":{"volumes":[{"name":"data","$patch":"delete"}]}}`,
		"replace a list":             `{"spec":{"volumes":[{"name":"only","emptyDir":{}},{"$patch":"replace"}]}}`,
		"null removes a label":       `{"metadata":{"labels":{"app":null}}}`,
		"scalar and struct fields":   `{"spec":{"dnsPolicy":"None","securityContext":{"fsGroup":7}}}`,
		"set element order":          `{"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"app"}],"containers":[{"name":"side","image":"s"}]}}`,
	}
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}, {Name: "worker", Image: "w"}},
				Volumes:    []corev1.Volume{{Name: "data"}, {Name: "cache"}},
			},
		}
	}
	for name, patch := range patches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var pm map[string]any
			if err := json.Unmarshal([]byte(patch), &pm); err != nil {
				t.Fatal(err)
			}
			sparse := base()
			before, _ := json.Marshal(pm)
			if err := Merge(sparse, pm, nil); err != nil {
				t.Fatal(err)
			}
			if after, _ := json.Marshal(pm); string(after) != string(before) {
				t.Errorf("Merge changed its patch: %s, was %s", after, before)
			}
			orig, err := json.Marshal(base())
			if err != nil {
				t.Fatal(err)
			}
			fullJSON, err := strategicpatch.StrategicMergePatch(orig, []byte(patch), &corev1.Pod{})
			if err != nil {
				t.Fatal(err)
			}
			var full corev1.Pod
			if err := json.Unmarshal(fullJSON, &full); err != nil {
				t.Fatal(err)
			}
			sortByName(sparse)
			sortByName(&full)
			if !reflect.DeepEqual(sparse, &full) {
				a, _ := json.Marshal(sparse)
				t.Errorf("sparse merge differs from a full strategic merge:\nsparse: %s\nfull:   %s", a, fullJSON)
			}
		})
	}
}

// TestMergeReportsTouchedFields: fields set as a whole are reported with
// their values before; labels and name-keyed list items are not.
func TestMergeReportsTouchedFields(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "1"}},
		Spec:       corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst, Containers: []corev1.Container{{Name: "app"}}},
	}
	var patch map[string]any
	if err := json.Unmarshal([]byte(`{"metadata":{"labels":{"b":"2"}},"spec":{"dnsPolicy":"None","hostname":"h","containers":[{"name":"app","image":"i"}]}}`), &patch); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	if err := Merge(pod, patch, func(part, field string, before any) { got[part+"."+field] = before }); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"spec.dnsPolicy": "ClusterFirst", "spec.hostname": nil}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("touched %v, want %v", got, want)
	}
	if pod.Spec.DNSPolicy != "None" || pod.Spec.Hostname != "h" || pod.Spec.Containers[0].Image != "i" || pod.Labels["a"] != "1" || pod.Labels["b"] != "2" {
		t.Errorf("merged pod: %+v", pod)
	}
}

func sortByName(p *corev1.Pod) {
	sort.Slice(p.Spec.Containers, func(i, j int) bool { return p.Spec.Containers[i].Name < p.Spec.Containers[j].Name })
	sort.Slice(p.Spec.Volumes, func(i, j int) bool { return p.Spec.Volumes[i].Name < p.Spec.Volumes[j].Name })
}
