package podcodec

import (
	"encoding/json"
	"math/rand"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/randfill"
)

// TestDecodeMatchesKubernetes: the round trip's pod decoder yields what
// sigs.k8s.io/json (the API server's decoder) yields, for randomly filled
// pods, and falls back to it, listing the field, for a field our types do
// not know.
func TestDecodeMatchesKubernetes(t *testing.T) {
	t.Parallel()
	checked := 0
	for i, pod := range randomPods(300) {
		raw, err := json.Marshal(pod)
		if err != nil {
			continue
		}
		checked++
		var want, got corev1.Pod
		if _, err := kjson.UnmarshalStrict(raw, &want, kjson.DisallowUnknownFields); err != nil {
			t.Fatal(err)
		}
		unknown, err := decode(raw, &got)
		if err != nil || len(unknown) != 0 {
			t.Fatalf("random pod %d: decodePod: %v, unknown %v", i, err, unknown)
		}
		if !apiequality.Semantic.DeepEqual(got, want) {
			t.Fatalf("random pod %d: decoded pods differ:\n%s", i, cmp.Diff(want, got))
		}
	}
	if checked < 250 {
		t.Errorf("only %d of 300 random pods were encodable: the comparison proves little", checked)
	}
	for _, raw := range []string{
		`{"metadata":{"name":"a"},"spec":{"futureField":1,"containers":[{"name":"c"}]}}`,
		`{"metadata":{"Name":"a"},"spec":{"containers":[{"name":"c"}]}}`,
		`{"metadata":{"name":"a","name":"b"},"spec":{}}`,
	} {
		var got corev1.Pod
		unknown, err := decode([]byte(raw), &got)
		if err != nil || len(unknown) == 0 {
			t.Errorf("decode(%s): unknown %v, err %v; want the field reported", raw, unknown, err)
		}
	}
}

// randomPods returns n pods with random values in every field of v1.Pod
// (valid quantities and int-or-strings, as an API server would hold).
func randomPods(n int) []*corev1.Pod {
	funcs := fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, func(serializer.CodecFactory) []any {
		return []any{
			func(q *resource.Quantity, c randfill.Continue) {
				*q = *resource.NewQuantity(c.Int63n(1<<40), resource.Format([]string{"DecimalSI", "BinarySI", "DecimalExponent"}[c.Intn(3)]))
			},
			func(v *intstr.IntOrString, c randfill.Continue) {
				if c.Bool() {
					*v = intstr.FromInt32(c.Int31())
				} else {
					*v = intstr.FromString(c.String(10))
				}
			},
		}
	})
	f := fuzzer.FuzzerFor(funcs, rand.NewSource(1), serializer.NewCodecFactory(scheme.Scheme)).NilChance(0.2).NumElements(0, 2)
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = &corev1.Pod{}
		f.Fill(out[i])
	}
	return out
}
