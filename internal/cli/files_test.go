package cli

import (
	"bytes"
	"os"
	"path/filepath"
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
