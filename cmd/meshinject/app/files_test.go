package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteOutputMode: -o creates a file as any new file is created (0666
// less the umask) and keeps the mode of a file it replaces.
func TestWriteOutputMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	fresh := filepath.Join(dir, "new.yaml")
	if err := writeOutput(fresh, []byte("a: 1\n"), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(fresh); st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644 (0666 less umask 022)", st.Mode().Perm())
	}
	kept := filepath.Join(dir, "kept.yaml")
	if err := os.WriteFile(kept, []byte("old"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := writeOutput(kept, []byte("a: 2\n"), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(kept)
	b, _ := os.ReadFile(kept)
	if st.Mode().Perm() != 0o444 || string(b) != "a: 2\n" {
		t.Errorf("replaced file: mode %v content %q, want 0444 and the new content", st.Mode().Perm(), b)
	}
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  selector: {matchLabels: {app: %s}}
  template:
    metadata:
      labels: {app: %s}%s
    spec:
      containers:
      - name: app
        image: registry.example/app:1
`

func writeDeployment(t *testing.T, path, name, extra string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fmt.Appendf(nil, deployment, name, name, name, extra), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInjectDirectoryAndOutput: -f DIR takes *.yaml, *.yml and *.json
// under it, recursively, in lexical order, and nothing else; -o is written
// only when every input succeeds (--output-file): after a failure the old file is intact
// and no temporary file is left.
func TestInjectDirectoryAndOutput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	writeDeployment(t, filepath.Join(in, "b.yaml"), "bee", "")
	writeDeployment(t, filepath.Join(in, "sub", "a.yml"), "ay", "")
	writeDeployment(t, filepath.Join(in, "notes.txt"), "ignored", "")
	out := filepath.Join(dir, "out", "injected.yaml")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := Execute(t.Context(), []string{"inject", "-f", in, "--output-file", out}, Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &stderr}); code != 0 {
		t.Fatalf("inject -f DIR: exit %d: %s", code, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, ay := bytes.Index(got, []byte("name: bee")), bytes.Index(got, []byte("name: ay"))
	if b < 0 || ay < 0 || b > ay || bytes.Contains(got, []byte("ignored")) || bytes.Count(got, []byte("name: istio-proxy")) != 2 {
		t.Errorf("output is not b.yaml then sub/a.yml, both injected, without notes.txt:\n%s", got)
	}

	// A bad input: exit 1, the previous output untouched, no temporary file.
	writeDeployment(t, filepath.Join(in, "c.yaml"), "sea", "\n      annotations: {sidecar.istio.io/proxyCPU: fast}")
	stderr.Reset()
	if code := Execute(t.Context(), []string{"inject", "-f", in, "--output-file", out}, Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &stderr}); code == 0 {
		t.Fatal("inject with a bad annotation exited 0")
	}
	if !strings.Contains(stderr.String(), "c.yaml") || !strings.Contains(stderr.String(), `sidecar.istio.io/proxyCPU "fast"`) {
		t.Errorf("error %q does not name the file, annotation and value", stderr.String())
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(after, got) {
		t.Error("a failed run changed the previous output")
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("output directory holds %d entries after a failed run, want only the previous output", len(entries))
	}
}
