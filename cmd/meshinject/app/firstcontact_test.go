package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFirstContact checks what a new user meets first: a manifest named
// without -f, an input with no workload, -o naming a file, and a cluster
// command with no kubeconfig each get a message that says what to do.
func TestFirstContact(t *testing.T) {
	dir := t.TempDir()
	cm := filepath.Join(dir, "cm.yaml")
	if err := os.WriteFile(cm, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
	t.Setenv("HOME", dir)
	for _, c := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"inject", "app.yaml"}, 1, "inject takes no arguments: name manifests with -f, e.g. meshinject inject -f app.yaml"},
		{[]string{"uninject", "app.yaml"}, 1, "meshinject uninject -f app.yaml"},
		{[]string{"explain", "app.yaml"}, 1, "meshinject explain -f app.yaml"},
		{[]string{"inject", "-f", cm}, 0, "cm.yaml: no workload (Pod, Deployment"},
		{[]string{"explain", "-f", cm}, 0, "cm.yaml: no workload (Pod, Deployment"},
		{[]string{"inject", "-f", cm, "-o", filepath.Join(dir, "out.yaml")}, 0, "-o/--output FILE is deprecated: use --output-file FILE"},
		{[]string{"check-inject", "-n", "x", "pod/web"}, 1, "no kubeconfig found ($KUBECONFIG, ~/.kube/config): name one with --kubeconfig"},
		{[]string{"tag", "list"}, 1, "name one with --kubeconfig"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, stderr, code := run(t, nil, c.args...)
			if code != c.code || !strings.Contains(stderr, c.inStderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.inStderr)
			}
			if strings.Contains(stderr, "KUBERNETES_MASTER") {
				t.Errorf("stderr repeats client-go's KUBERNETES_MASTER hint: %q", stderr)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.yaml")); err != nil || !strings.Contains(string(b), "kind: ConfigMap") {
		t.Errorf("-o (deprecated) no longer writes the output file: %q, %v", b, err)
	}
}
