package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// opsTool is the path of helm, kustomize, promtool or promnames in
// MESHINJECT_OPS_TOOLS, which make test sets (e2e/tools/build.sh ops). Run
// by hand without it, the test is skipped; on CI it fails.
func opsTool(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("MESHINJECT_OPS_TOOLS")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MESHINJECT_OPS_TOOLS is not set on CI: run make test, which builds helm, kustomize and promtool")
		}
		t.Skip("MESHINJECT_OPS_TOOLS is not set: make test builds helm, kustomize and promtool and sets it")
	}
	return filepath.Join(dir, name)
}

// run runs a tool for at most two minutes and returns its stdout.
func run(t *testing.T, tool string, args ...string) []byte {
	t.Helper()
	out, err := runErr(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", tool, strings.Join(args, " "), err)
	}
	return out
}

// runErr is run, returning the error with the tool's stderr.
func runErr(t *testing.T, tool string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, opsTool(t, tool), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), errors.Join(err, errors.New(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart as release meshinject in namespace
// meshinject with the given --set values.
func helmTemplate(t *testing.T, set ...string) []byte {
	t.Helper()
	out, err := helmTemplateErr(t, set...)
	if err != nil {
		t.Fatalf("helm template --set %s: %v", strings.Join(set, ","), err)
	}
	return out
}

func helmTemplateErr(t *testing.T, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "meshinject", "charts/meshinject", "--namespace", "meshinject"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runErr(t, "helm", args...)
}

// object is one decoded manifest.
type object = map[string]any

// objects decodes a multi-document manifest, keyed "Kind namespace/name".
func objects(t *testing.T, data []byte) map[string]object {
	t.Helper()
	out := map[string]object{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode manifest: %v", err)
		}
		if o == nil {
			continue
		}
		meta, _ := o["metadata"].(map[string]any)
		key := o["kind"].(string) + " " + str(meta["namespace"]) + "/" + str(meta["name"])
		if _, dup := out[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		out[key] = o
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// keys are m's keys, sorted.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// helmLabels are the labels only the chart sets: they name the release.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

// withoutHelmLabels drops helmLabels from each object's labels.
func withoutHelmLabels(objs map[string]object) map[string]object {
	for _, o := range objs {
		meta, _ := o["metadata"].(map[string]any)
		labels, _ := meta["labels"].(map[string]any)
		for _, l := range helmLabels {
			delete(labels, l)
		}
	}
	return objs
}
