package app

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/spf13/pflag"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/jsontree"
	"github.com/meshinject/meshinject/internal/podcodec"
	"github.com/meshinject/meshinject/webhook"
)

// TestGoldenThroughWebhook runs every golden case's pods through the
// webhook's handler, configured as the case configures the CLI, and checks
// that each patched request equals the pod the CLI wrote. A pod template
// goes in as its controller would create it (owner reference and generated
// name, taken out again before comparing), so the webhook derives the
// workload the CLI is told. Both doors share the engine and the round
// trip; this checks that the webhook's patch is the CLI's output.
func TestGoldenThroughWebhook(t *testing.T) {
	compared := 0
	for _, c := range goldenCases(t) {
		input, err := os.ReadFile(c.Path)
		if err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := run(t, input, append([]string{"inject", "-f", "-"}, c.Flags...)...)
		if code != 0 {
			compared += refusedThroughWebhook(t, c, input, stderr)
			continue
		}
		h, err := caseHandler(c)
		if err != nil {
			t.Fatal(err)
		}
		in, out := docsOf(t, input), docsOf(t, []byte(stdout))
		if len(in) != len(out) {
			t.Fatalf("%s: %d documents in, %d out", c.Name, len(in), len(out))
		}
		for i := range in {
			for _, p := range workloadPods(in[i], out[i]) {
				got := throughWebhook(t, h, p)
				if want := tidy(p.out); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %s: the webhook's patched pod differs from the CLI's:\n%s", c.Name, p.obj, lineDiff(yamlOf(t, want), yamlOf(t, got)))
				}
				compared++
			}
		}
	}
	if compared < 60 {
		t.Errorf("compared %d pods, want at least 60", compared)
	}
}

// cliError is the CLI's error for a refused pod: the document's object and
// the reason.
var cliError = regexp.MustCompile(`document \d+, line \d+: ([a-z]+/[^/]+/[^:]+): (.*)`)

// refusedThroughWebhook checks an error case: the configuration the CLI
// refused does not load for the webhook either, and the pod it refused is
// denied by the webhook with the same reason. It returns the pods checked.
func refusedThroughWebhook(t *testing.T, c goldenCase, input []byte, stderr string) int {
	t.Helper()
	cliErr := strings.TrimPrefix(strings.TrimSpace(stderr), "Error: ")
	h, err := caseHandler(c)
	if err != nil {
		if err.Error() != cliErr {
			t.Errorf("%s: the webhook's configuration fails with %q, the CLI's with %q", c.Name, err, cliErr)
		}
		return 1
	}
	m := cliError.FindStringSubmatch(cliErr)
	if m == nil {
		return 0 // the input itself does not parse: no pod to send
	}
	for _, doc := range docsOf(t, input) {
		for _, p := range workloadPods(doc, doc) {
			if p.obj.String() != m[1] {
				continue
			}
			resp := handle(t, h, p)
			if resp.Allowed || resp.Result == nil || resp.Result.Message != m[2] {
				t.Errorf("%s: %s: the webhook answered %+v; want a denial saying %q", c.Name, p.obj, resp.Result, m[2])
			}
			return 1
		}
	}
	t.Errorf("%s: no pod %s in the input", c.Name, m[1])
	return 0
}

// caseHandler is a webhook handler on the engine the case's flags build.
func caseHandler(c goldenCase) (*webhook.Handler, error) {
	o := &injectOptions{NativeSidecars: "auto"}
	fs := pflag.NewFlagSet(c.Name, pflag.ContinueOnError)
	o.AddFlags(fs)
	fs.StringVar(&o.NativeSidecars, "native-sidecars", "auto", "")
	if err := fs.Parse(c.Flags); err != nil {
		return nil, err
	}
	native, err := parseNative(o.NativeSidecars)
	if err != nil {
		return nil, err
	}
	cfg, err := o.Load()
	if err != nil {
		return nil, err
	}
	eng, err := inject.New(inject.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	return webhook.NewHandler(webhook.Options{Engines: webhook.EngineSourceFunc(func() *inject.Engine { return eng }), Native: webhook.Always(native)})
}

// casePod is one pod of a golden case: as the input has it and as the
// CLI wrote it.
type casePod struct {
	obj     manifest.Object
	in, out map[string]any
}

// workloadPods pairs the pods of an input document with the output's.
func workloadPods(in, out any) []casePod {
	im, _ := in.(map[string]any)
	om, _ := out.(map[string]any)
	kind, _ := im["kind"].(string)
	if items, ok := im["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		outItems, _ := om["items"].([]any)
		var pods []casePod
		for j := range min(len(items), len(outItems)) {
			pods = append(pods, workloadPods(items[j], outItems[j])...)
		}
		return pods
	}
	path, ok := inject.TemplatePath(kind)
	if !ok {
		return nil
	}
	md, _ := im["metadata"].(map[string]any)
	obj := manifest.Object{Kind: kind}
	obj.APIVersion, _ = im["apiVersion"].(string)
	obj.Name, _ = md["name"].(string)
	obj.Namespace, _ = md["namespace"].(string)
	inPod, outPod := at(im, path), at(om, path)
	if inPod == nil || outPod == nil {
		return nil
	}
	if kind != "Pod" {
		inPod, outPod = podPart(inPod), podPart(outPod)
	}
	return []casePod{{obj: obj, in: inPod, out: outPod}}
}

func at(m map[string]any, path []string) map[string]any {
	for _, p := range path {
		m, _ = m[p].(map[string]any)
	}
	return m
}

// podPart is a template's metadata and spec (what the CLI injects).
func podPart(tmpl map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"metadata", "spec"} {
		if v, ok := tmpl[k]; ok {
			out[k] = jsontree.Copy(v)
		}
	}
	return out
}

// throughWebhook sends p's input pod to h as the API server would and
// returns the pod patched with the answer, tidied for comparison.
func throughWebhook(t *testing.T, h *webhook.Handler, p casePod) map[string]any {
	t.Helper()
	raw, resp := asCreated(t, p), handle(t, h, p)
	if !resp.Allowed {
		t.Fatalf("%s: the webhook refused a pod the CLI injected: %v", p.obj, resp.Result)
	}
	if len(resp.Patch) > 0 {
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = patch.Apply(raw); err != nil {
			t.Fatalf("%s: the patch does not apply: %v", p.obj, err)
		}
	}
	var got map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &got); err != nil {
		t.Fatal(err)
	}
	if p.obj.Kind != "Pod" {
		md, _ := got["metadata"].(map[string]any)
		delete(md, "ownerReferences")
		delete(md, "generateName")
		if labels, _ := md["labels"].(map[string]any); labels != nil {
			delete(labels, templateHash)
			if len(labels) == 0 {
				delete(md, "labels")
			}
		}
		if len(md) == 0 {
			delete(got, "metadata")
		}
	}
	return tidy(got)
}

// handle sends p's pod to h as the API server would.
func handle(t *testing.T, h *webhook.Handler, p casePod) admission.Response {
	t.Helper()
	return h.Handle(t.Context(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "golden", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: p.obj.Namespace,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: asCreated(t, p)},
	}})
}

// asCreated is p's input pod as JSON, as its controller would create it.
func asCreated(t *testing.T, p casePod) []byte {
	t.Helper()
	pod := jsontree.Copy(p.in).(map[string]any)
	md, _ := pod["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		pod["metadata"] = md
	}
	owner := controllerOf(p.obj)
	if owner != nil {
		md["ownerReferences"] = []any{owner}
		md["generateName"] = owner["name"].(string) + "-"
		if p.obj.Kind == "Deployment" {
			labels, _ := md["labels"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
				md["labels"] = labels
			}
			labels[templateHash] = "5d9c7b8f6c"
		}
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// templateHash is the label a Deployment's ReplicaSet gives its pods.
const templateHash = "pod-template-hash"

// controllerOf is the owner reference a controller gives the pods of obj
// (nil for a Pod): a Deployment's pods belong to a ReplicaSet named with a
// template hash, a CronJob's to a Job named with a schedule time.
func controllerOf(obj manifest.Object) map[string]any {
	ref := func(apiVersion, kind, name string) map[string]any {
		return map[string]any{"apiVersion": apiVersion, "kind": kind, "name": name, "uid": "u", "controller": true}
	}
	switch obj.Kind {
	case "Pod":
		return nil
	case "Deployment":
		return ref("apps/v1", "ReplicaSet", obj.Name+"-5d9c7b8f6c")
	case "CronJob":
		return ref("batch/v1", "Job", obj.Name+"-29400000")
	}
	return ref(obj.APIVersion, obj.Kind, obj.Name)
}

// tidy drops, recursively, the members encoding invents for unset fields
// (podcodec.Invented): the API server reads both forms as the same pod.
func tidy(v map[string]any) map[string]any {
	podcodec.Tidy(v)
	return v
}
