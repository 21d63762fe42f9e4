package inject

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"istio.io/api/annotation"
)

// TestAnnotationTable: the exported names are Istio's; every annotation
// the engine's code names through istio.io/api/annotation is in
// readAnnotations (or is one it writes); and the README's annotation
// table and fuzzAnnotations name every annotation of the table.
func TestAnnotationTable(t *testing.T) {
	for got, want := range map[string]string{AnnotationInject: annotation.SidecarInject.Name, AnnotationStatus: annotation.SidecarStatus.Name,
		AnnotationOverrides: annotation.ProxyOverrides.Name, AnnotationTemplates: annotation.InjectTemplates.Name,
		AnnotationRevision: annotation.IoIstioRev.Name, AnnotationProxyConfig: annotation.ProxyConfig.Name} {
		if got != want {
			t.Errorf("constant %q, Istio's name %q", got, want)
		}
	}
	inTable := map[string]bool{}
	for _, list := range readAnnotations {
		for _, a := range list {
			inTable[a.Name] = true
		}
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
		if writes[id] {
			continue
		}
		if !strings.Contains(string(tableSrc), "&annotation."+id+",") && !strings.Contains(string(tableSrc), "&annotation."+id+"}") {
			t.Errorf("the engine reads annotation.%s, which readAnnotations does not list", id)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)[strings.Index(string(readme), "## Annotations"):]
	section = section[:strings.Index(section, "\n## ")]
	cells := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(section, -1)
	for name := range inTable {
		short := name[strings.LastIndex(name, "/")+1:]
		if !slices.ContainsFunc(cells, func(c []string) bool { return c[1] == name || c[1] == short }) {
			t.Errorf("the README's annotation table does not name %s", name)
		}
		if !slices.Contains(fuzzAnnotations, name) {
			t.Errorf("fuzzAnnotations does not include %s", name)
		}
	}
}
