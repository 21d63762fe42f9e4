package inject

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"istio.io/api/annotation"
)

// TestAnnotationTable: the exported names are Istio's; every annotation
// the engine's code names through istio.io/api/annotation is in
// annotationTable (or is one it writes), once; and the README's
// annotation table is generated from it. (fuzzAnnotations is too.)
func TestAnnotationTable(t *testing.T) {
	for got, want := range map[string]string{AnnotationInject: annotation.SidecarInject.Name, AnnotationStatus: annotation.SidecarStatus.Name,
		annotationOverrides: annotation.ProxyOverrides.Name, AnnotationTemplates: annotation.InjectTemplates.Name,
		annotationRevision: annotation.IoIstioRev.Name, annotationProxyConfig: annotation.ProxyConfig.Name} {
		if got != want {
			t.Errorf("constant %q, Istio's name %q", got, want)
		}
	}
	inTable := map[string]bool{}
	for _, r := range annotationTable {
		if inTable[r.Name] {
			t.Errorf("annotationTable lists %s twice", r.Name)
		}
		inTable[r.Name] = true
	}
	// Identifiers the code uses: annotation.X.Name in the package's files.
	files, _ := filepath.Glob("*.go")
	used := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "annotations.go" {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "annotation" {
					used[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	tableSrc, err := os.ReadFile("annotations.go")
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]bool{"IoIstioRev": true} // uninject removes the revision it wrote
	for id := range used {
		if !writes[id] && !strings.Contains(string(tableSrc), "{annotation."+id+".Name,") {
			t.Errorf("the engine reads annotation.%s, which annotationTable does not list", id)
		}
	}
	checkREADMETable(t)
}

// checkREADMETable: the README's annotation table is annotationTable's
// (refresh it with -update).
func checkREADMETable(t *testing.T) {
	t.Helper()
	var b strings.Builder
	b.WriteString("| annotation | step | effect | validated as |\n|---|---|---|---|\n")
	for _, r := range annotationTable {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Name, r.Step, r.Effect, r.Valid)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- annotation table: go test ./internal/inject -run TestAnnotationTable -update -->\n", "<!-- end of annotation table -->"
	i, j := bytes.Index(readme, []byte(begin)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("the README has no annotation table between %q and %q", begin, end)
	}
	i += len(begin)
	if *update {
		out := slices.Concat(readme[:i], []byte(b.String()), readme[j:])
		if err := os.WriteFile("../../README.md", out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := string(readme[i:j]); got != b.String() {
		t.Errorf("the README's annotation table is not annotationTable's (refresh it with go test ./internal/inject -run TestAnnotationTable -update):\n%s", cmp.Diff(b.String(), got))
	}
}

var update = flag.Bool("update", false, "rewrite the README's annotation table")
