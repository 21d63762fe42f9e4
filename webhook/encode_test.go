package webhook

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/randfill"

	"github.com/meshinject/meshinject/inject"
	"github.com/meshinject/meshinject/internal/benchpods"
)

// TestEncodePodMatchesStdlib: the handler's pod encoder writes exactly
// the bytes encoding/json writes (the API server's encoding), for injected
// pods and for randomly filled pods that set every field of v1.Pod.
func TestEncodePodMatchesStdlib(t *testing.T) {
	t.Parallel()
	check := func(name string, pod *corev1.Pod) {
		t.Helper()
		want, err := json.Marshal(pod)
		if err != nil {
			t.Logf("%s: %v", name, err)
			return // not encodable at all (a random value no API server holds)
		}
		got, err := encodePod(pod)
		if err != nil {
			t.Fatalf("%s: encodePod: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: encodings differ:\n got %s\nwant %s", name, got, want)
		}
	}
	h, _ := newTestHandler(t, true)
	for _, p := range benchpods.All() {
		var pod corev1.Pod
		if err := json.Unmarshal(p.JSON, &pod); err != nil {
			t.Fatal(err)
		}
		res, err := h.opts.Engines.Engine().Inject(inject.Request{Pod: &pod, Namespace: "shop", NativeSidecars: true})
		if err != nil {
			t.Fatal(err)
		}
		check(p.Name, res.Pod)
	}
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
	for i := range 300 {
		var pod corev1.Pod
		f.Fill(&pod)
		check("random pod "+string(rune('0'+i%10)), &pod)
	}
}
