package app

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// input is one manifest file's name and content.
type input struct {
	name string
	data []byte
}

// readInputs reads -f: "-" for stdin, a file, or a directory walked
// recursively for *.yaml, *.yml and *.json in lexical order.
func readInputs(path string, stdin io.Reader) ([]input, error) {
	if path == "" {
		return nil, fmt.Errorf("-f/--filename is required (a file, a directory or - for stdin)")
	}
	if path == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return []input{{name: "<stdin>", data: b}}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return []input{{name: path, data: b}}, nil
	}
	var names []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				names = append(names, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []input
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, input{name: n, data: b})
	}
	return out, nil
}

// writeOutput writes data to stdout, or atomically to path: a temporary
// file in the same directory renamed over path, so a failed run leaves
// nothing partial.
func writeOutput(path string, data []byte, stdout io.Writer) error {
	if path == "" || path == "-" {
		_, err := stdout.Write(data)
		return err
	}
	tmp, err := createBeside(path)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after a successful rename
	if st, err := os.Stat(path); err == nil {
		// Replacing a file keeps its permissions.
		if err := tmp.Chmod(st.Mode().Perm()); err != nil {
			_ = tmp.Close()
			return err
		}
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// createBeside creates a new temporary file next to path with mode 0666
// less the umask, as a newly created output file gets (os.CreateTemp
// would make it 0600 whatever the umask).
func createBeside(path string) (*os.File, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	for range 100 {
		name := filepath.Join(dir, "."+base+".tmp-"+rand.Text()[:8])
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666) //nolint:gosec // G302: 0666 less the umask, as os.Create makes files
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create a temporary file beside %s: names taken", path)
}
