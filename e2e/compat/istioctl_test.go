//go:build compat

package compat

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/internal/config"
)

// istioctl runs the pinned Istio's istioctl with a deadline.
func istioctl(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := os.Getenv("COMPAT_ISTIOCTL")
	if bin == "" {
		t.Fatal("COMPAT_ISTIOCTL is not set: run make test-compat")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// istioctlArgs turns a case's meshinject flags into istioctl kube-inject's
// for Istio's rendered inputs in dir: values and mesh files and --set are
// merged into temporary files, --native-sidecars becomes
// ENABLE_NATIVE_SIDECARS. ok is false for flags istioctl has no
// equivalent of (an injection config of meshinject's own format).
func istioctlArgs(t *testing.T, c inputCase, dir string) (args, env []string, ok bool) {
	t.Helper()
	flags, own := flagValue(c.flags, "injectConfigFile")
	if own != "" {
		return nil, nil, false
	}
	flags, values := flagValue(flags, "valuesFile")
	flags, mesh := flagValue(flags, "meshConfigFile")
	flags, native := flagValue(flags, "native-sidecars")
	if _, skip := istioctlSkips[c.name]; skip {
		return nil, nil, false
	}
	flags, rev := flagValue(flags, "revision")
	if rev == "" {
		flags, rev = flagValue(flags, "r")
		for i, f := range flags {
			if f == "-r" && i+1 < len(flags) {
				rev = flags[i+1]
				flags = append(flags[:i:i], flags[i+2:]...)
				break
			}
		}
	}
	var sets []string
	env = []string{"ENABLE_NATIVE_SIDECARS=false"}
	if native == "true" {
		env = []string{"ENABLE_NATIVE_SIDECARS=true"}
	}
	for i := 0; i < len(flags); i++ {
		switch {
		case flags[i] == "--set" && i+1 < len(flags):
			sets = append(sets, flags[i+1])
			// istioctl, like istiod, reads the compliance policy from its
			// own environment; meshinject from values pilot.env.
			if v, ok := strings.CutPrefix(flags[i+1], "pilot.env.COMPLIANCE_POLICY="); ok {
				env = append(env, "COMPLIANCE_POLICY="+v)
			}
			i++
		default:
			return nil, nil, false
		}
	}
	valuesPath := mergedYAML(t, filepath.Join(dir, "values"), values)
	if len(sets) > 0 {
		valuesPath = withSets(t, valuesPath, sets)
	}
	if rev != "" {
		// Istio's rendered inputs are the default revision's; a revision's
		// own install renders other values (values.revision, the mesh's
		// discovery address), which meshinject derives from -r instead.
		return nil, nil, false
	}
	rev = "default"
	args = []string{"kube-inject", "-f", c.path, "--revision", rev,
		"--injectConfigFile", filepath.Join(dir, "config"),
		"--valuesFile", valuesPath,
		"--meshConfigFile", mergedYAML(t, filepath.Join(dir, "mesh"), mesh)}
	return args, env, true
}

// withSets writes the values file at path with --set values applied.
func withSets(t *testing.T, path string, sets []string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if err := config.SetValue(v, s); err != nil {
			t.Fatal(err)
		}
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// istioctlSkips are the inputs not compared with istioctl, with the reason.
var istioctlSkips = map[string]string{
	"inject/unknown-fields.yaml": "istioctl decodes into its own types and drops the fields they lack; meshinject keeps them",
	"inject/owner-cronjob.yaml":  "a Pod with owner references: meshinject names the owning workload (CronJob report) offline as istiod's webhook does; istioctl names the pod itself",
	"inject/istio-1-30.yaml":     "it pins Istio 1.30 (global.tag) and the pinned istioctl is 1.31; TestIstioTemplates compares it with Istio 1.30's templates",
	"inject/istio-1-32.yaml":     "it pins Istio 1.32 (global.tag), of which no istio.io/istio module is served",
}

// istioctlDeliberate are the known, deliberate differences between
// meshinject's and istioctl's output, each with its reason (the README's
// table lists the same); each normalises one document of both outputs.
var istioctlDeliberate = []struct {
	what, reason string
	normalize    func(doc map[string]any)
}{
	{
		what:   "status of workloads",
		reason: "istioctl writes the zero status of its typed objects (replicas: 0, ...); meshinject writes the input's; the API server ignores status on create",
		normalize: func(doc map[string]any) {
			if _, ok := doc["kind"]; ok {
				delete(doc, "status")
			}
		},
	},
	{
		what:   "CronJob: where the injected labels and annotations go",
		reason: "istioctl writes them on spec.jobTemplate.metadata, so the Job's pods never carry the status annotation or the tlsMode label; meshinject writes them on the pod template",
		normalize: func(doc map[string]any) {
			if doc["kind"] != "CronJob" {
				return
			}
			jt, _ := doc["spec"].(map[string]any)["jobTemplate"].(map[string]any)
			tmpl, _ := jt["spec"].(map[string]any)["template"].(map[string]any)
			delete(jt, "metadata")
			if md, ok := tmpl["metadata"].(map[string]any); ok {
				labels, _ := md["labels"].(map[string]any)
				for k := range labels {
					if strings.Contains(k, "istio.io/") {
						delete(labels, k)
					}
				}
				delete(md, "annotations")
			}
		},
	},
}

// normalizeIstioctl removes what differs between the two tools' output
// without a difference in the objects the API server stores: the fields
// istioctl's typed round trip invents (creationTimestamp: null,
// resources: {}, strategy: {}, status: {}), and meshinject's own uninject
// record.
func normalizeIstioctl(obj map[string]any) {
	for k, v := range obj {
		switch t := v.(type) {
		case nil:
			delete(obj, k)
		case map[string]any:
			if len(t) == 0 && k != "emptyDir" {
				delete(obj, k)
			}
		}
	}
	if k, ok := obj["annotations"].(map[string]any); ok {
		delete(k, "meshinject.io/uninject")
		if len(k) == 0 {
			delete(obj, "annotations")
		}
	}
}

// TestIstioctlKubeInject injects every input with meshinject and with
// istioctl kube-inject of the pinned Istio, both on Istio's rendered
// injector inputs, and wants the same objects. Inputs meshinject refuses
// (invalid annotations) are not compared here.
func TestIstioctlKubeInject(t *testing.T) {
	is := istios(t)[0]
	compared := 0
	for _, c := range inputCases(t) {
		args, env, ok := istioctlArgs(t, c, is.dir)
		if !ok {
			continue
		}
		ours, oursErr, code := run(append([]string{"kube-inject", "-f", c.path}, istioFlags(t, c, is.dir)...)...)
		if code != 0 {
			t.Logf("%s: meshinject refuses it: %s", c.name, strings.TrimSpace(oursErr))
			continue
		}
		compared++
		t.Run(c.name, func(t *testing.T) {
			theirs, theirsErr, err := istioctl(t, env, args...)
			if err != nil {
				t.Fatalf("istioctl kube-inject: %v: %s", err, theirsErr)
			}
			compareDocs(t, theirs, ours, "istioctl (-) and meshinject (+)")
		})
	}
	t.Logf("compared %d inputs with istioctl %s", compared, is.version)
	if compared < 60 {
		t.Errorf("compared %d inputs, want at least 60", compared)
	}
}

// istioctlInjected returns istioctl kube-inject's output for c, written to
// a file, or ok false when c is not compared with istioctl.
func istioctlInjected(t *testing.T, c inputCase, dir string) (path string, ok bool) {
	t.Helper()
	args, env, ok := istioctlArgs(t, c, dir)
	if !ok {
		return "", false
	}
	if _, _, code := run(append([]string{"kube-inject", "-f", c.path}, istioFlags(t, c, dir)...)...); code != 0 {
		return "", false // an input meshinject refuses
	}
	out, stderr, err := istioctl(t, env, args...)
	if err != nil {
		t.Fatalf("istioctl kube-inject: %v: %s", err, stderr)
	}
	path = filepath.Join(t.TempDir(), "istioctl-"+filepath.Base(c.path))
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, true
}

// compareDocs normalises both outputs (the deliberate differences, then
// istioctl's typed round trip) and reports a difference.
func compareDocs(t *testing.T, want, got string, what string) {
	t.Helper()
	w, g := docsOf(t, want), docsOf(t, got)
	for _, docs := range [][]any{w, g} {
		for _, d := range docs {
			for _, n := range istioctlDeliberate {
				n.normalize(d.(map[string]any))
			}
		}
		for _, n := range deliberate {
			walk(docs, n.normalize)
		}
		walk(docs, normalizeIstioctl)
	}
	if !reflect.DeepEqual(w, g) {
		t.Errorf("%s: want (-), got (+):\n%s", what, unifiedDiff(t, w, g))
	}
}

// eachIstioctlOutput runs check as a subtest for every input compared
// with istioctl, with the path of istioctl kube-inject's output of it.
func eachIstioctlOutput(t *testing.T, what string, check func(t *testing.T, c inputCase, injected string)) {
	t.Helper()
	is := istios(t)[0]
	compared := 0
	for _, c := range inputCases(t) {
		injected, ok := istioctlInjected(t, c, is.dir)
		if !ok {
			continue
		}
		compared++
		t.Run(c.name, func(t *testing.T) { check(t, c, injected) })
	}
	t.Logf("%s %d istioctl outputs", what, compared)
	if compared < 60 {
		t.Errorf("%s %d istioctl outputs, want at least 60", what, compared)
	}
}

// TestReinjectIstioctlOutput re-injects istioctl kube-inject's output with
// meshinject and wants istioctl's injection of the original: a manifest
// Istio injected before is the usual migration input.
func TestReinjectIstioctlOutput(t *testing.T) {
	dir := istios(t)[0].dir
	eachIstioctlOutput(t, "re-injected", func(t *testing.T, c inputCase, injected string) {
		want, err := os.ReadFile(injected)
		if err != nil {
			t.Fatal(err)
		}
		re := c
		re.path = injected
		got, stderr, code := run(append([]string{"kube-inject", "-f", injected}, istioFlags(t, re, dir)...)...)
		if code != 0 {
			t.Fatalf("meshinject kube-inject of istioctl's output: %s", stderr)
		}
		compareDocs(t, string(want), got, "re-injected istioctl output")
	})
}

// uninjectSkips are the inputs whose istioctl output cannot be uninjected
// back to the input exactly, with the reason (the README lists them).
var uninjectSkips = map[string]string{
	"inject/cronjob.yaml":                         "istioctl writes the status annotation on spec.jobTemplate.metadata, so nothing marks the pod template as injected",
	"inject/default-container-set.yaml":           "the user's default-container names the first container, which is what Istio writes: the two cannot be told apart",
	"inject/gateway-values-security-context.yaml": "the pod securityContext came from the values' gateways.securityContext, which uninject (configuration-free) does not know",
	"inject/gateway-run-as-root.yaml":             "the gateway template's default pod securityContext (the unprivileged-port sysctl) cannot be told from a user's own (examples/gateway.yaml writes the same)",
	"inject/prometheus-sanitized.yaml":            "Istio records the app's Prometheus settings without their spelling (prometheus-io/port): they come back as prometheus.io/*",
	"inject/reinject-tuned-proxy.yaml":            "the input was injected before: uninject gives it back without any injection",
	"inject/reinject-user-proxy.yaml":             userContainerPosition,
	"inject/override-istio-init-fields.yaml":      userContainerPosition,
}

// userContainerPosition is why a user's own istio-proxy or istio-init
// between other containers comes back after them.
const userContainerPosition = "the user's own istio-proxy (istio-init) sat between other containers; Istio's output records its fields in proxy.istio.io/overrides but not its position, so uninject puts it after them"

// numberedPorts resolves the named ports of the probes and lifecycle hooks
// in a manifest to numbers, as Istio records them in ISTIO_KUBE_APP_PROBERS
// (so an uninjected probe comes back with the number).
func numberedPorts(t *testing.T, data string) string {
	t.Helper()
	docs := docsOf(t, data)
	walk(docs, func(c map[string]any) {
		ports, ok := c["ports"].([]any)
		if !ok || c["image"] == nil {
			return
		}
		named := map[string]any{}
		for _, p := range ports {
			if m, ok := p.(map[string]any); ok && m["name"] != nil {
				named[m["name"].(string)] = m["containerPort"]
			}
		}
		walk(c, func(h map[string]any) {
			for _, k := range []string{"httpGet", "tcpSocket"} {
				if a, ok := h[k].(map[string]any); ok {
					if n, ok := a["port"].(string); ok && named[n] != nil {
						a["port"] = named[n]
					}
				}
			}
		})
	})
	var b strings.Builder
	for _, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.String()
}

// TestUninjectIstioctlOutput uninjects istioctl kube-inject's output with
// meshinject and wants the original input back: every container, volume,
// label and annotation Istio added removed, the app's probes restored.
func TestUninjectIstioctlOutput(t *testing.T) {
	eachIstioctlOutput(t, "uninjected", func(t *testing.T, c inputCase, injected string) {
		if reason, skip := uninjectSkips[c.name]; skip {
			t.Skip(reason)
		}
		original, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		got, stderr, code := run("uninject", "-f", injected)
		if code != 0 {
			t.Fatalf("meshinject uninject of istioctl's output: %s", stderr)
		}
		compareDocs(t, numberedPorts(t, string(original)), numberedPorts(t, got), "uninjected istioctl output")
	})
}

// istioSamples are Istio's own sample manifests injected by both tools.
var istioSamples = []string{
	"samples/httpbin/httpbin.yaml",
	"samples/bookinfo/platform/kube/bookinfo.yaml",
	"samples/bookinfo/platform/kube/bookinfo-versions.yaml",
	"samples/bookinfo/platform/kube/bookinfo-db.yaml",
	"samples/bookinfo/platform/kube/bookinfo-ratings-v2.yaml",
}

// TestIstioSamples injects Istio's sample manifests with meshinject's
// built-in configuration (what a user gets without pointing it at an
// injector ConfigMap) and with istioctl kube-inject on the pinned Istio's
// chart, and wants the same objects.
func TestIstioSamples(t *testing.T) {
	is := istios(t)[0]
	module := moduleDir(t, is.version)
	for _, sample := range istioSamples {
		t.Run(sample, func(t *testing.T) {
			path := filepath.Join(module, sample)
			ours, stderr, code := run("kube-inject", "-f", path)
			if code != 0 {
				t.Fatalf("meshinject kube-inject: %s", stderr)
			}
			theirs, stderr, err := istioctl(t, []string{"ENABLE_NATIVE_SIDECARS=false"}, "kube-inject", "-f", path, "--revision", "default",
				"--injectConfigFile", filepath.Join(is.dir, "config"),
				"--valuesFile", filepath.Join(is.dir, "values"),
				"--meshConfigFile", filepath.Join(is.dir, "mesh"))
			if err != nil {
				t.Fatalf("istioctl kube-inject: %v: %s", err, stderr)
			}
			compareDocs(t, theirs, ours, "istioctl (-) and meshinject with its built-in configuration (+)")
		})
	}
}
