package testutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	kjson "sigs.k8s.io/json"
)

// ManifestCase is one manifest of a golden directory with the meshinject
// flags of its first line ("# meshinject: ARGS").
type ManifestCase struct {
	// Name is "<directory base>/<file>".
	Name string
	// Path is the manifest's path.
	Path string
	// Flags are the inject flags the case asks for.
	Flags []string
}

// ManifestCases returns the cases of dir: every *.yaml and *.json but the
// admissionreview*.json webhook bodies.
func ManifestCases(t testing.TB, dir string) []ManifestCase {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cases []ManifestCase
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".json")) || strings.HasPrefix(n, "admissionreview") {
			continue
		}
		path := filepath.Join(dir, n)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		var flags []string
		if args, ok := strings.CutPrefix(first, "# meshinject:"); ok {
			flags = strings.Fields(args)
		}
		cases = append(cases, ManifestCase{Name: filepath.Base(dir) + "/" + n, Path: path, Flags: flags})
	}
	return cases
}

// ManifestDocs parses a manifest stream into its documents' JSON trees.
func ManifestDocs(t testing.TB, data []byte) []any {
	t.Helper()
	docs, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// ParseManifest parses a YAML or JSON manifest stream into its documents'
// JSON trees (integers kept as int64), leaving out empty documents.
func ParseManifest(data []byte) ([]any, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []any
	for {
		var j json.RawMessage
		err := dec.Decode(&j)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &v); err != nil {
			return nil, err
		}
		if v != nil {
			out = append(out, v)
		}
	}
}
