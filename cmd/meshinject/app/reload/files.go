package reload

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileNames are the directory's files, in snapshot order.
var fileNames = [...]string{fileConfig, fileValues, fileMesh}

// snapshot is what one read of the directory found; readErr is why the
// read failed, if it did (two reads failing alike are equal).
type snapshot struct {
	data    [len(fileNames)][]byte
	present [len(fileNames)]bool
	readErr string
}

// read reads the directory's files; a missing file is absent, any other
// error (the directory itself missing included) fails.
func read(dir string) (*snapshot, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("configuration directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("configuration directory %s is not a directory", dir)
	}
	s := &snapshot{}
	for i, name := range fileNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		s.data[i], s.present[i] = b, true
	}
	return s, nil
}

// check refuses a missing file that was present at start and an empty
// file: both are a ConfigMap key removed or a file caught mid-write, never
// a request for the defaults.
func (s *snapshot) check(required [len(fileNames)]bool) error {
	for i, name := range fileNames {
		switch {
		case required[i] && !s.present[i]:
			return fmt.Errorf("%s: the file is missing (it was present at start; restart to serve without it)", name)
		case s.present[i] && len(bytes.TrimSpace(s.data[i])) == 0:
			return fmt.Errorf("%s: the file is empty", name)
		}
	}
	return nil
}

// equal reports whether two reads found the same files; a nil snapshot
// equals only nil.
func (s *snapshot) equal(o *snapshot) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.readErr != o.readErr {
		return false
	}
	for i := range fileNames {
		if s.present[i] != o.present[i] || !bytes.Equal(s.data[i], o.data[i]) {
			return false
		}
	}
	return true
}
