package inject

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/jsontree"
	"github.com/meshinject/meshinject/internal/podcodec"
	"github.com/meshinject/meshinject/test/testutil"
)

// corpusDirs hold the injection corpus: each input manifest, its first line
// "# meshinject: ARGS" (the inject command's flags; file names relative to
// this directory), and its output as `meshinject inject` writes it
// (NAME.injected, refreshed by the command's own golden test). The CLI's and
// the webhook's golden tests read the same folders.
var corpusDirs = []string{"testdata/inject", "../../examples"}

// corpusEngine builds the engine a case's flags describe, as the inject
// command builds it.
func corpusEngine(flags []string) (*Engine, bool, error) {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	var sets stringList
	var src config.Sources
	files := map[string]*[]byte{"injectConfigFile": &src.InjectionConfig, "valuesFile": &src.Values, "meshConfigFile": &src.Mesh}
	names := map[string]*string{}
	for name := range files {
		names[name] = fs.String(name, "", "")
	}
	fs.Var(&sets, "set", "")
	fs.StringVar(&src.Revision, "r", "", "")
	fs.BoolVar(&src.StrictValues, "strict-values", false, "")
	native := fs.String("native-sidecars", "auto", "")
	if err := fs.Parse(flags); err != nil {
		return nil, false, err
	}
	for name, dst := range files {
		if *names[name] == "" {
			continue
		}
		b, err := os.ReadFile(*names[name])
		if err != nil {
			return nil, false, err
		}
		*dst = b
	}
	src.Set = sets
	cfg, err := config.Load(src)
	if err != nil {
		return nil, false, err
	}
	eng, err := New(Options{Config: cfg})
	return eng, *native == "true", err
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// podVisitor sees each pod of a manifest: its tree (a Pod, or a template's
// metadata and spec), the workload it belongs to, and where to store the
// changed tree.
type podVisitor func(pod map[string]any, w *Workload, namespace string, store func(map[string]any)) error

// eachPod calls fn for each pod in doc, a manifest document's tree (Lists
// included).
func eachPod(doc any, fn podVisitor) error {
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		for _, it := range items {
			if err := eachPod(it, fn); err != nil {
				return err
			}
		}
		return nil
	}
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	if kind == "Pod" {
		return fn(obj, nil, ns, func(out map[string]any) { clear(obj); maps.Copy(obj, out) })
	}
	path, ok := TemplatePath(kind)
	if !ok {
		return nil
	}
	tmpl := obj
	for _, p := range path {
		if tmpl, ok = tmpl[p].(map[string]any); !ok {
			return nil
		}
	}
	pod := map[string]any{}
	for _, k := range []string{"metadata", "spec"} {
		if v, ok := tmpl[k]; ok {
			pod[k] = v
		}
	}
	apiVersion, _ := obj["apiVersion"].(string)
	w := &Workload{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, Name: name}
	return fn(pod, w, ns, func(out map[string]any) {
		for _, k := range []string{"metadata", "spec"} {
			v, ok := out[k]
			if m, isMap := v.(map[string]any); ok && isMap && len(m) == 0 && k == "metadata" {
				ok = false
			}
			if ok {
				tmpl[k] = v
			} else {
				delete(tmpl, k)
			}
		}
	})
}

// injectTree injects one pod tree through the pod codec, as the inject
// command and the webhook do, and returns the injected tree (nil when the
// engine left the pod as it was).
func injectTree(eng *Engine, pod map[string]any, w *Workload, ns string, native bool) (map[string]any, error) {
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	out, changed, err := podcodec.RoundTrip(raw, podcodec.Options{Tidy: true}, func(p *corev1.Pod) (bool, error) {
		res, err := eng.Inject(Request{Pod: p, Namespace: ns, Workload: w, NativeSidecars: native, ForcePolicy: true})
		return err == nil && !res.Skipped, err
	})
	if err != nil || !changed {
		return nil, err
	}
	var tree map[string]any
	return tree, kjson.UnmarshalCaseSensitivePreserveInts(out, &tree)
}

// TestGolden runs the engine alone on every pod of the corpus: each pod it
// injects must be the pod of the case's golden output, each pod it leaves
// must be there unchanged, and a case whose output is an error must be
// refused by the engine (or its configuration, or the manifest's syntax).
func TestGolden(t *testing.T) {
	t.Parallel()
	n := 0
	for _, dir := range corpusDirs {
		for _, c := range testutil.ManifestCases(t, dir) {
			n++
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				golden, err := os.ReadFile(c.Path + ".injected")
				if err != nil {
					t.Fatal(err)
				}
				wantErr := strings.HasSuffix(string(golden), "# exit: 1\n")
				err = checkCase(t, c, golden, wantErr)
				switch {
				case wantErr && err == nil:
					t.Errorf("the golden output is an error, but the engine injected every pod")
				case !wantErr && err != nil:
					t.Errorf("%v", err)
				}
			})
		}
	}
	if n < 40 {
		t.Errorf("have %d corpus cases, want at least 40", n)
	}
}

// checkCase injects the case's pods and compares them with golden; it
// returns the first error of configuration, parsing or injection.
func checkCase(t *testing.T, c testutil.ManifestCase, golden []byte, wantErr bool) error {
	t.Helper()
	eng, native, err := corpusEngine(c.Flags)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	input, err := os.ReadFile(c.Path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := testutil.ParseManifest(input)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	for _, d := range docs {
		err := eachPod(d, func(pod map[string]any, w *Workload, ns string, store func(map[string]any)) error {
			out, err := injectTree(eng, pod, w, ns, native)
			if out != nil {
				checkProperties(t, eng, pod, out, w, ns, native)
				store(out)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if wantErr {
		return nil
	}
	if want := testutil.ManifestDocs(t, golden); !reflect.DeepEqual(roundTrip(t, docs), want) {
		t.Errorf("the engine's pods are not the golden's:\n%s", testutil.LineDiff(jsonText(t, want), jsonText(t, docs)))
	}
	return nil
}

// checkProperties checks that injecting the injected pod out changes
// nothing, and that uninjecting it gives the input pod (uninjected, when
// the input was injected before).
func checkProperties(t *testing.T, eng *Engine, in, out map[string]any, w *Workload, ns string, native bool) {
	t.Helper()
	again, err := injectTree(eng, out, w, ns, native)
	if err != nil {
		t.Errorf("re-injection failed: %v", err)
	} else if again != nil && !reflect.DeepEqual(roundTrip(t, again), roundTrip(t, out)) {
		t.Errorf("inject(inject(pod)) is not inject(pod):\n%s", testutil.LineDiff(jsonText(t, out), jsonText(t, again)))
	}
	want, got := typedPod(t, in), typedPod(t, out)
	if _, ok := want.Annotations[AnnotationStatus]; ok {
		if err := Uninject(want); err != nil {
			t.Fatalf("uninject of the input: %v", err)
		}
	}
	if err := Uninject(got); err != nil {
		t.Fatalf("uninject: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(want, got) {
		t.Errorf("uninject(inject(pod)) is not the pod:\n%s", testutil.LineDiff(jsonText(t, want), jsonText(t, got)))
	}
}

func typedPod(t *testing.T, tree map[string]any) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := jsontree.FromTree(tree, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

// roundTrip gives trees the number types a parse gives (int64, float64).
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
