//go:build compat

// Package compat holds the compatibility tier: Istio's own injection
// templates, rendered from its istio-discovery chart at test time, are the
// oracle for meshinject's built-in ones, and istioctl built from the same
// Istio module checks round trips of manifests it injected.
//
// make test-compat renders the chart of every Istio version in
// COMPAT_ISTIO_VERSIONS into a directory (config, values, mesh) and runs this
// package with COMPAT_ISTIO="version=dir ..." (the pinned version first) and
// COMPAT_ISTIOCTL pointing at istioctl of the pinned version.
package compat

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/cmd/meshinject/app"
	"github.com/meshinject/meshinject/test/testutil"
)

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// caseDirs hold the inputs compared: the golden inputs and the examples.
var caseDirs = []string{"internal/inject/testdata/inject", "examples"}

// istio is one Istio version's rendered injector inputs.
type istio struct {
	version string
	dir     string
}

func istios(t *testing.T) []istio {
	t.Helper()
	raw := os.Getenv("COMPAT_ISTIO")
	if raw == "" {
		t.Fatal("COMPAT_ISTIO is not set: run make test-compat")
	}
	var out []istio
	for _, f := range strings.Fields(raw) {
		v, dir, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("COMPAT_ISTIO item %q: want version=dir", f)
		}
		out = append(out, istio{version: v, dir: dir})
	}
	return out
}

// compatTag is the proxy tag the charts were rendered with.
func compatTag(t *testing.T) string {
	t.Helper()
	tag := os.Getenv("COMPAT_TAG")
	if tag == "" {
		t.Fatal("COMPAT_TAG is not set: run make test-compat")
	}
	return tag
}

// inputCase is one manifest of caseDirs with the flags of its first line.
type inputCase struct {
	name  string
	path  string
	flags []string
}

func inputCases(t *testing.T) []inputCase {
	t.Helper()
	var out []inputCase
	for _, d := range caseDirs {
		for _, c := range testutil.ManifestCases(t, filepath.Join(repoRoot, d)) {
			// Flag values naming files are relative to internal/inject.
			for i, f := range c.Flags {
				if strings.HasPrefix(f, "testdata/") {
					c.Flags[i] = filepath.Join(repoRoot, "internal/inject", f)
				}
			}
			out = append(out, inputCase{name: c.Name, path: c.Path, flags: c.Flags})
		}
	}
	return out
}

// run executes meshinject's command line in-process.
func run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = app.Execute(context.Background(), args, app.Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

// flagValue removes --name VALUE (or --name=VALUE) from flags and returns
// the value.
func flagValue(flags []string, name string) ([]string, string) {
	var rest []string
	value := ""
	for i := 0; i < len(flags); i++ {
		switch {
		case flags[i] == "--"+name && i+1 < len(flags):
			value = flags[i+1]
			i++
		case strings.HasPrefix(flags[i], "--"+name+"="):
			value = strings.TrimPrefix(flags[i], "--"+name+"=")
		default:
			rest = append(rest, flags[i])
		}
	}
	return rest, value
}

// istioFlags are the flags that inject c with Istio's templates, values
// and mesh config in dir: the case's own values and mesh files are merged
// over Istio's into temporary files.
func istioFlags(t *testing.T, c inputCase, dir string) []string {
	t.Helper()
	flags, values := flagValue(c.flags, "valuesFile")
	flags, mesh := flagValue(flags, "meshConfigFile")
	return append([]string{
		"--injectConfigFile", filepath.Join(dir, "config"),
		"--valuesFile", mergedYAML(t, filepath.Join(dir, "values"), values),
		"--meshConfigFile", mergedYAML(t, filepath.Join(dir, "mesh"), mesh),
	}, flags...)
}

// mergedYAML writes base with over (if any) merged over it, as Helm merges
// values files, and returns the file's path.
func mergedYAML(t *testing.T, base, over string) string {
	t.Helper()
	if over == "" {
		return base
	}
	var b, o map[string]any
	for path, dst := range map[string]*map[string]any{base: &b, over: &o} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, dst); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	mergeKeepNull(b, o)
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(base))
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// deliberate are the known, deliberate differences between the built-in
// templates and Istio's, each with its reason; the README's table lists the
// same. Each normalises one object of both outputs so the rest is compared.
var deliberate = []struct {
	what, reason string
	normalize    func(obj map[string]any)
}{}

// versionDrift are the inputs whose output Istio's templates of a
// version give differently from the built-ins at that version's tag, with
// the change; the README's version table lists them. Only a development
// snapshot has any: it carries its minor's tag but predates changes of
// that minor.
var versionDrift = map[string]map[string]string{
	"v0.0.0-20260423205519-b01690e6db7d": {
		"inject/compliance-policy.yaml":               snapshot + "1.31 added GODEBUG=fips140=only for COMPLIANCE_POLICY fips-140-3 later",
		"sidecar/values:global.proxy.image/name":      snapshot + snapshotInitImage,
		"sidecar/values:global.proxy.image/reference": snapshot + snapshotInitImage,
		"sidecar/values:global.proxy_init.image/name": snapshot + snapshotInitImage,
		"sidecar/label:app/trailing":                  snapshot + snapshotTrim,
		"sidecar/label:app/untrimmed":                 snapshot + snapshotTrim,
	},
}

// snapshot and snapshotInitImage explain the drift of the 1.31
// development snapshot.
const (
	snapshot          = "1.31 development snapshot of 2026-04-23: "
	snapshotTrim      = "1.31 trims the canonical name of '-', '_' and '.' at both ends; the snapshot only trailing '-'"
	snapshotInitImage = "1.31 runs istio-init from global.proxy_init.image; the snapshot from the proxy's image unless proxy_init.image is a full reference"
)

// walk calls f on every object in v.
func walk(v any, f func(map[string]any)) {
	switch t := v.(type) {
	case map[string]any:
		f(t)
		for _, c := range t {
			walk(c, f)
		}
	case []any:
		for _, c := range t {
			walk(c, f)
		}
	}
}

// mergeKeepNull merges over into base as Helm merges values files, but
// keeps an explicit null, so the merged file still deletes that key from
// the values it is merged over in turn.
func mergeKeepNull(base, over map[string]any) {
	for k, v := range over {
		if om, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				mergeKeepNull(bm, om)
				continue
			}
		}
		base[k] = v
	}
}

// docsOf parses a manifest stream into its documents' trees.
func docsOf(t *testing.T, data string) []any {
	t.Helper()
	return testutil.ManifestDocs(t, []byte(data))
}

// unifiedDiff is a unified diff of the YAML of want and got.
func unifiedDiff(t *testing.T, want, got any) string {
	t.Helper()
	lines := func(v any) []string {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return difflib.SplitLines(string(b))
	}
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: lines(want), B: lines(got), Context: 3})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIstioTemplates injects every input with Istio's own templates, values
// and mesh config and with meshinject's built-in ones, and wants the same
// output (as parsed YAML). Inputs that bring their own injection config are
// not compared.
func TestIstioTemplates(t *testing.T) {
	for _, is := range istios(t) {
		t.Run(is.version, func(t *testing.T) {
			compared := 0
			for _, c := range inputCases(t) {
				if _, own := flagValue(c.flags, "injectConfigFile"); own != "" {
					continue
				}
				compared++
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					if reason, ok := versionDrift[is.version][c.name]; ok {
						t.Skip(reason)
					}
					if _, tag := setValue(c.flags, "global.tag"); tag != "" && minorOf(tag) != minorOf(versionTag(t, is)) {
						t.Skipf("the input pins Istio %s (global.tag); it is compared with that minor's templates", tag)
					}
					compareTemplates(t, c, is)
				})
			}
			t.Logf("compared %d inputs", compared)
			if compared < 80 {
				t.Errorf("compared %d inputs, want at least 80", compared)
			}
		})
	}
}

// compareTemplates injects c with Istio's templates, values and mesh config
// of is and with the built-in ones, and wants the same exit code and, on
// success, the same objects (after the deliberate differences).
func compareTemplates(t *testing.T, c inputCase, is istio) {
	t.Helper()
	// Both sides run the version's own release tag, which the built-ins
	// follow; the case's flags come after it and win.
	c.flags = append([]string{"--set", "global.tag=" + versionTag(t, is)}, c.flags...)
	ours, oursErr, oursCode := run(append([]string{"kube-inject", "-f", c.path}, c.flags...)...)
	theirs, theirsErr, theirsCode := run(append([]string{"kube-inject", "-f", c.path}, istioFlags(t, c, is.dir)...)...)
	if theirsCode != oursCode {
		t.Fatalf("exit %d with Istio's templates (%s), %d with the built-in ones (%s)", theirsCode, theirsErr, oursCode, oursErr)
	}
	if oursCode != 0 {
		return
	}
	o, th := docsOf(t, ours), docsOf(t, theirs)
	for _, d := range deliberate {
		walk(o, d.normalize)
		walk(th, d.normalize)
	}
	if !reflect.DeepEqual(o, th) {
		t.Errorf("built-in templates (-) and Istio's (+) differ:\n%s", unifiedDiff(t, o, th))
	}
}

// versionTag is the proxy tag of an Istio version: its module's VERSION
// (the minor, e.g. 1.30) with the patch of COMPAT_TAG when the minors
// agree, else patch 0.
func versionTag(t *testing.T, is istio) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleDir(t, is.version), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	minor := strings.TrimSpace(string(raw))
	if tag := compatTag(t); strings.HasPrefix(tag, minor+".") {
		return tag
	}
	return minor + ".0"
}

// setValue returns the value a --set of key in flags gives, the last one
// winning.
func setValue(flags []string, key string) (bool, string) {
	found, value := false, ""
	for i := 0; i+1 < len(flags); i++ {
		if flags[i] == "--set" {
			if v, ok := strings.CutPrefix(flags[i+1], key+"="); ok {
				found, value = true, v
			}
		}
	}
	return found, value
}

// minorOf is the "1.30" of a tag such as 1.30.4.
func minorOf(tag string) string {
	parts := strings.SplitN(tag, ".", 3)
	if len(parts) < 2 {
		return tag
	}
	return parts[0] + "." + parts[1]
}
