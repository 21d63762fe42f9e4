package reload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// watcher watches the configuration directory and the directories its
// files' symlinks resolve to (the kubelet's ..data target), re-adding the
// directory when it was deleted and created again.
type watcher struct {
	fs  *fsnotify.Watcher
	dir string
	// dirInfo identifies the directory being watched; nil when none is.
	dirInfo os.FileInfo
	// targets are the watched symlink-target directories.
	targets map[string]bool
}

func newWatcher(dir string) (*watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return &watcher{fs: w, dir: filepath.Clean(dir), targets: map[string]bool{}}, nil
}

func (w *watcher) close() { _ = w.fs.Close() }

// sync brings the watches up to date and returns why the directory cannot
// be watched, or nil.
func (w *watcher) sync() error {
	fi, err := os.Stat(w.dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("not a directory")
	}
	if err != nil {
		w.dirInfo = nil
		return dirError(w.dir, err)
	}
	if w.dirInfo == nil || !os.SameFile(w.dirInfo, fi) {
		_ = w.fs.Remove(w.dir) // the old watch, if the kernel has not dropped it
		if err := w.fs.Add(w.dir); err != nil {
			return dirError(w.dir, err)
		}
		w.dirInfo = fi
	}
	want := map[string]bool{}
	for _, name := range fileNames {
		p, err := filepath.EvalSymlinks(filepath.Join(w.dir, name))
		if err != nil {
			continue
		}
		if d := filepath.Dir(p); d != w.dir {
			want[d] = true
		}
	}
	for d := range w.targets {
		if !want[d] {
			_ = w.fs.Remove(d) // gone already when the kubelet deleted it
			delete(w.targets, d)
		}
	}
	for d := range want {
		if !w.targets[d] {
			if err := w.fs.Add(d); errors.Is(err, fs.ErrNotExist) {
				continue // swapped away since; the next sync sees the new one
			} else if err != nil {
				return dirError(d, err)
			}
			w.targets[d] = true
		}
	}
	return nil
}
