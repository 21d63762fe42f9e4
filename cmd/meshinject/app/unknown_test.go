package app

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/meshinject/meshinject/internal/inject"
)

// plant adds fields unknown to k8s.io/api to every pod (template) in obj
// and returns how many pods it touched.
func plant(obj map[string]any) int {
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		n := 0
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				n += plant(m)
			}
		}
		return n
	}
	path, ok := inject.TemplatePath(kind)
	if !ok {
		return 0
	}
	pod := obj
	for _, p := range path {
		next, ok := pod[p].(map[string]any)
		if !ok {
			return 0
		}
		pod = next
	}
	md, _ := pod["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		pod["metadata"] = md
	}
	md["futureMetadataField"] = "m"
	spec, _ := pod["spec"].(map[string]any)
	if spec == nil {
		return 0
	}
	spec["futureSpecField"] = map[string]any{"enabled": true}
	for _, list := range []string{"containers", "initContainers", "volumes"} {
		items, _ := spec[list].([]any)
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				m["futureField"] = fmt.Sprintf("%s/%v", list, m["name"])
			}
		}
	}
	return 1
}

// TestUnknownFieldsSurvive checks, over every golden input, that fields our
// k8s.io/api does not know stay with their item through inject and that
// uninject gives the input back.
func TestUnknownFieldsSurvive(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, code := run(t, raw, append([]string{"inject", "-f", "-"}, c.Flags...)...); code != 0 {
				t.Skip("input is an error case")
			}
			var docs []any
			planted := 0
			for _, d := range docsOf(t, raw) {
				if m, ok := d.(map[string]any); ok {
					planted += plant(m)
				}
				docs = append(docs, d)
			}
			if planted == 0 {
				t.Skip("no pods")
			}
			var in strings.Builder
			for i, d := range docs {
				if i > 0 {
					in.WriteString("---\n")
				}
				in.WriteString(yamlOf(t, d))
			}
			out, stderr, code := run(t, []byte(in.String()), append([]string{"inject", "-f", "-"}, c.Flags...)...)
			if code != 0 {
				t.Fatalf("inject failed: %s", stderr)
			}
			got := docsOf(t, []byte(out))
			for i := range docs {
				checkPlanted(t, docs[i], got[i])
			}
			back, stderr, code := run(t, []byte(out), "uninject", "-f", "-")
			if code != 0 {
				t.Fatalf("uninject failed: %s", stderr)
			}
			want := docs
			if strings.Contains(in.String(), "sidecar.istio.io/status") {
				// Injected before: uninject(inject(x)) is uninject(x).
				stripped, stderr, code := run(t, []byte(in.String()), "uninject", "-f", "-")
				if code != 0 {
					t.Fatalf("uninject of the input failed: %s", stderr)
				}
				want = docsOf(t, []byte(stripped))
			}
			if g := docsOf(t, []byte(back)); !reflect.DeepEqual(want, g) {
				t.Errorf("uninject(inject(x)) != x with unknown fields:\n%s", lineDiff(yamlOf(t, want), yamlOf(t, g)))
			}
		})
	}
}

// checkPlanted asserts that every planted field of want is in got at the
// item with the same name.
func checkPlanted(t *testing.T, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("object became %T", got)
			return
		}
		for k, wv := range w {
			if strings.HasPrefix(k, "future") && !reflect.DeepEqual(g[k], wv) {
				t.Errorf("planted field %s = %v lost or moved (got %v)", k, wv, g[k])
			}
			if gv, ok := g[k]; ok {
				checkPlanted(t, wv, gv)
			}
		}
	case []any:
		g, _ := got.([]any)
		for _, wi := range w {
			wm, ok := wi.(map[string]any)
			if !ok || wm["name"] == nil {
				continue
			}
			for _, gi := range g {
				if gm, ok := gi.(map[string]any); ok && gm["name"] == wm["name"] {
					checkPlanted(t, wm, gm)
				}
			}
		}
	}
}
