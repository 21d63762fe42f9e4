package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Golden checks got against the golden file at path; with update, it
// writes got there instead. refresh is the command that rewrites the
// goldens, named in the failure with the line diff.
func Golden(t testing.TB, path, got string, update bool, refresh string) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // a testdata directory of the repository
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil { //nolint:gosec // a golden file committed with the repository
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("missing golden (run %s): %v", refresh, err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (refresh with %s and review the diff):\n%s", path, refresh, LineDiff(string(want), got))
	}
}

// LineDiff is the difference of two texts, line by line.
func LineDiff(want, got string) string {
	return cmp.Diff(strings.Split(want, "\n"), strings.Split(got, "\n"))
}
