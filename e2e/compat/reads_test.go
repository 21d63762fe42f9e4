//go:build compat

package compat

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template/parse"

	"github.com/meshinject/meshinject/templates"
)

// istioTemplates are Istio's injection templates the built-ins stand for,
// by name, with their file in the istio-discovery chart.
var istioTemplates = []struct{ name, file string }{
	{"sidecar", "injection-template.yaml"},
	{"gateway", "gateway-injection-template.yaml"},
	{"grpc-agent", "grpc-agent.yaml"},
	{"grpc-simple", "grpc-simple.yaml"},
}

// chartFiles is where the chart keeps its injection templates.
const chartFiles = "manifests/charts/istio-control/istio-discovery/files"

// moduleDir is the istio.io/istio module directory of version v, from
// COMPAT_ISTIO_MODULES.
func moduleDir(t *testing.T, v string) string {
	t.Helper()
	for _, f := range strings.Fields(os.Getenv("COMPAT_ISTIO_MODULES")) {
		if version, dir, ok := strings.Cut(f, "="); ok && version == v {
			return dir
		}
	}
	t.Fatal("COMPAT_ISTIO_MODULES names no module directory for " + v)
	return ""
}

// templateReads parses one of Istio's templates and returns what it reads
// from its inputs, sorted, each as kind:name: "values:" and a dotted
// .Values path (pilot.env keys included), "annotation:", "label:" or
// "proxyMetadata:" and the key it indexes.
func templateReads(t *testing.T, path string) []string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tree := parse.New(filepath.Base(path))
	tree.Mode = parse.SkipFuncCheck
	trees := map[string]*parse.Tree{}
	if _, err := tree.Parse(string(text), "{{", "}}", trees); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	add := func(k string) { seen[k] = true }
	for _, tr := range trees {
		readsOf(tr.Root, add)
	}
	return slices.Sorted(maps.Keys(seen))
}

// indexedMaps are the template fields whose keys a template names with a
// string argument, and the kind of key each holds. annotation takes
// .ObjectMeta and the annotation's name.
var indexedMaps = map[string]string{
	"ObjectMeta.Annotations":    "annotation",
	"ObjectMeta":                "annotation",
	"ObjectMeta.Labels":         "label",
	"ProxyConfig.ProxyMetadata": "proxyMetadata",
}

// readsOf adds every read under n: .Values paths (templates.ValuesPath)
// and the keys an indexing command names.
func readsOf(n parse.Node, add func(string)) {
	templates.Inspect(n, func(n parse.Node) bool {
		if p, ok := templates.ValuesPath(n); ok {
			add("values:" + p)
			return false
		}
		if c, ok := n.(*parse.CommandNode); ok {
			indexedKeys(c, add)
		}
		return true
	})
}

// indexedKeys adds the key of each map field of indexedMaps that c indexes
// with a string argument.
func indexedKeys(c *parse.CommandNode, add func(string)) {
	for i := 0; i+1 < len(c.Args); i++ {
		f, ok := c.Args[i].(*parse.FieldNode)
		if !ok {
			continue
		}
		if s, ok := c.Args[i+1].(*parse.StringNode); ok {
			if kind, ok := indexedMaps[strings.Join(f.Ident, ".")]; ok {
				add(kind + ":" + s.Text)
			}
		}
	}
}

// TestTemplateReads checks the parser on a template whose reads are known,
// so that a read it stops finding fails here rather than silently dropping
// cases from TestValueCoverage.
func TestTemplateReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.yaml")
	text := "{{ define \"x\" }}{{ .Values.global.a }}{{ end }}" +
		"{{ if eq (.Values.pilot.env).FLAG true }}{{ $.Values.b.c }}{{ end }}" +
		"{{ annotation .ObjectMeta `sidecar.istio.io/x` .Values.d }}" +
		"{{ index .ObjectMeta.Labels `app` }}{{ isset .ObjectMeta.Annotations `y` }}" +
		"{{ range $k, $v := .ProxyConfig.ProxyMetadata }}{{ end }}{{ index .ProxyConfig.ProxyMetadata \"M\" }}"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"annotation:sidecar.istio.io/x", "annotation:y", "label:app", "proxyMetadata:M",
		"values:b.c", "values:d", "values:global.a", "values:pilot.env.FLAG"}
	if got := templateReads(t, path); !slices.Equal(got, want) {
		t.Errorf("reads %q, want %q", got, want)
	}
}
