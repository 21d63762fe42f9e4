package manifest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	docs, err := Split([]byte("a: 1\n---\n\nb: 2\n--- # comment\nc: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("got %d documents, want 3", len(docs))
	}
	wantLines := []int{1, 3, 6}
	for i, d := range docs {
		if d.Line != wantLines[i] || d.Index != i+1 {
			t.Errorf("doc %d: index %d line %d, want line %d", i, d.Index, d.Line, wantLines[i])
		}
	}
	docs, err = Split([]byte(`{"a":1}` + "\n" + `{"b":2}`))
	if err != nil || len(docs) != 2 || !docs[1].JSON || docs[1].Line != 2 {
		t.Errorf("JSON stream: %+v, %v", docs, err)
	}
	if _, err := Split([]byte(`{"a":`)); err == nil {
		t.Error("truncated JSON accepted")
	}
}

func TestTransform(t *testing.T) {
	t.Parallel()
	mark := func(obj Object, pod *corev1.Pod) (bool, error) {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations["seen"] = obj.String()
		return true, nil
	}
	in := "# keep me\nkind: ConfigMap\nmetadata: {name: c}\n---\n" +
		"apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj, namespace: ns}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: a, image: i}]\n"
	out, err := Transform([]byte(in), mark)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.HasPrefix(s, "# keep me\nkind: ConfigMap\nmetadata: {name: c}\n---\n") {
		t.Errorf("passthrough not byte for byte:\n%s", s)
	}
	if !strings.Contains(s, "seen: cronjob/ns/cj") {
		t.Errorf("cronjob pod template not transformed:\n%s", s)
	}
	if strings.Contains(s, "creationTimestamp") || strings.Contains(s, "resources: {}") {
		t.Errorf("encoding artifacts leaked:\n%s", s)
	}
}

func TestTransformErrors(t *testing.T) {
	t.Parallel()
	noop := func(Object, *corev1.Pod) (bool, error) { return true, nil }
	tests := map[string]struct{ in, want string }{
		"yaml syntax": {"a: 1\n---\nkind: Pod\nmetadata:\n  labels: [x\n", "document 2, line 5"},
		"wrong type":  {"kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, ports: [{containerPort: http}]}]\n", "pod/default/p"},
		"json syntax": {"{\"kind\": \"Pod\",", "document 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Transform([]byte(tc.in), noop)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
