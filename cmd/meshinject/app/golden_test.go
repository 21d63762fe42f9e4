package app

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/test/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// corpus is the engine's package, which holds the injection corpus; the
// golden tests run there, so the cases' file names and the command's
// messages are those of the corpus (see internal/inject's corpusDirs).
const corpus = "../../../internal/inject"

// goldenDirs hold the golden cases, relative to corpus: the test inputs and
// the examples.
var goldenDirs = []string{"testdata/inject", "../../examples"}

// goldenCase is one input of the corpus with its flags.
type goldenCase = testutil.ManifestCase

// goldenCases discovers the cases: every *.yaml and *.json in goldenDirs,
// after changing to corpus (so the test cannot run in parallel). A first
// line "# meshinject: ARGS" adds flags to the inject command.
func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	t.Chdir(corpus)
	var cases []goldenCase
	for _, dir := range goldenDirs {
		cases = append(cases, testutil.ManifestCases(t, dir)...)
	}
	return cases
}

// run executes the command line in-process.
func run(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Execute(context.Background(), args, Streams{In: bytes.NewReader(stdin), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

// goldenText is what a golden file holds: stdout, then stderr and a
// non-zero exit code as trailing comments.
func goldenText(stdout, stderr string, code int) string {
	var b strings.Builder
	b.WriteString(stdout)
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if l != "" {
			b.WriteString("# stderr: " + l + "\n")
		}
	}
	if code != 0 {
		b.WriteString("# exit: 1\n")
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	cases := goldenCases(t)
	if len(cases) < 40 {
		t.Errorf("have %d golden cases, want at least 40", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			args := append([]string{"kube-inject", "-f", c.Path}, c.Flags...)
			stdout, stderr, code := run(t, nil, args...)
			got := goldenText(stdout, stderr, code)
			testutil.Golden(t, c.Path+".injected", got, *update, "go test ./cmd/meshinject/app -update")
		})
	}
}

// TestGoldenStale fails on golden files whose input is gone.
func TestGoldenStale(t *testing.T) {
	t.Chdir(corpus)
	for _, dir := range goldenDirs {
		goldens, err := filepath.Glob(filepath.Join(dir, "*.injected"))
		if err != nil {
			t.Fatal(err)
		}
		checkStale(t, goldens)
	}
}

func checkStale(t *testing.T, goldens []string) {
	t.Helper()
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".injected")); err != nil {
			t.Errorf("stale golden %s: its input is gone; delete it", g)
		}
	}
}

// TestGoldenProperties checks over every golden input that injection is
// idempotent and that uninject reverses it exactly (for an input injected
// before, that uninject(inject(x)) is uninject(x)).
func TestGoldenProperties(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			input, err := os.ReadFile(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			once, _, code := run(t, input, append([]string{"inject", "-f", "-"}, c.Flags...)...)
			if code != 0 {
				t.Skip("input is an error case")
			}
			twice, _, code := run(t, []byte(once), append([]string{"inject", "-f", "-"}, c.Flags...)...)
			if code != 0 {
				t.Fatalf("re-injecting the output failed")
			}
			if once != twice {
				t.Errorf("inject(inject(x)) != inject(x):\n%s", lineDiff(once, twice))
			}
			back, _, code := run(t, []byte(once), "uninject", "-f", "-")
			if code != 0 {
				t.Fatalf("uninject failed")
			}
			want := input
			if strings.Contains(string(input), "sidecar.istio.io/status") {
				// Injected before: uninject(inject(x)) is uninject(x).
				stripped, _, code := run(t, input, "uninject", "-f", "-")
				if code != 0 {
					t.Fatalf("uninject of the input failed")
				}
				want = []byte(stripped)
			}
			if w, g := docsOf(t, want), docsOf(t, []byte(back)); !reflect.DeepEqual(w, g) {
				t.Errorf("uninject(inject(x)) != x:\n%s", lineDiff(yamlOf(t, w), yamlOf(t, g)))
			}
		})
	}
}

// docsOf parses a manifest stream into its documents' trees.
func docsOf(t *testing.T, data []byte) []any {
	t.Helper()
	return testutil.ManifestDocs(t, data)
}

func yamlOf(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineDiff reports the difference between two texts, line by line.
func lineDiff(want, got string) string { return testutil.LineDiff(want, got) }
