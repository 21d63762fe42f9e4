// Package reload keeps an injection engine built from a configuration
// directory (a mounted ConfigMap with the keys config, values and mesh) and
// rebuilds it when the directory changes. The kubelet updates a mounted
// ConfigMap by swapping a symlink, so the directory is watched, not the
// files. A change is debounced, loaded and validated in full; a valid
// config is swapped in atomically, an invalid one is logged and counted and
// the last good one stays in force. Reviews keep the engine they started with.
package reload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshinject/meshinject/config"
	"github.com/meshinject/meshinject/inject"
)

// File names in the configuration directory: the keys of Istio's
// istio-sidecar-injector (config, values) and istio (mesh) ConfigMaps.
const (
	FileConfig = "config"
	FileValues = "values"
	FileMesh   = "mesh"
)

// Options configures a Reloader.
type Options struct {
	// Dir is the configuration directory. Empty means the embedded defaults,
	// never reloaded.
	Dir string
	// Revision is the control-plane revision ("" for the default one).
	Revision string
	// Debounce is how long the directory must be quiet before a reload.
	// Default 250ms.
	Debounce time.Duration
	// Registerer receives meshinject_config_reloads_total{result}. Default:
	// not registered.
	Registerer prometheus.Registerer
	// Log receives reload outcomes. Default: discard.
	Log logr.Logger
}

// Reloader holds the current engine. It implements webhook.EngineSource.
type Reloader struct {
	opts    Options
	current atomic.Pointer[inject.Engine]
	reloads *prometheus.CounterVec
}

// New loads the configuration once; it fails if that configuration is
// invalid, since there is no last good one to fall back on.
func New(opts Options) (*Reloader, error) {
	if opts.Debounce == 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	r := &Reloader{opts: opts, reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshinject_config_reloads_total",
		Help: "Configuration reloads, by result (success or failure).",
	}, []string{"result"})}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(r.reloads); err != nil {
			return nil, err
		}
	}
	e, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current.Store(e)
	return r, nil
}

// Engine returns the engine of the last good configuration.
func (r *Reloader) Engine() *inject.Engine { return r.current.Load() }

// load reads, loads and validates the directory's configuration.
func (r *Reloader) load() (*inject.Engine, error) {
	src := config.Sources{Revision: r.opts.Revision}
	if r.opts.Dir != "" {
		for name, dst := range map[string]*[]byte{FileConfig: &src.InjectionConfig, FileValues: &src.Values, FileMesh: &src.Mesh} {
			b, err := os.ReadFile(filepath.Join(r.opts.Dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			*dst = b
		}
	}
	cfg, err := config.Load(src)
	if err != nil {
		return nil, err
	}
	e, err := inject.New(inject.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload loads the directory now and swaps the engine if the configuration
// is valid. It returns the load error, if any; the previous engine stays.
func (r *Reloader) Reload() error {
	e, err := r.load()
	if err != nil {
		r.reloads.WithLabelValues("failure").Inc()
		r.opts.Log.Error(err, "configuration change refused; the last good configuration stays in force", "dir", r.opts.Dir)
		return err
	}
	r.current.Store(e)
	r.reloads.WithLabelValues("success").Inc()
	r.opts.Log.Info("configuration reloaded", "dir", r.opts.Dir)
	return nil
}

// Run watches the directory until ctx is done. With no directory it only
// waits for ctx.
func (r *Reloader) Run(ctx context.Context) error {
	if r.opts.Dir == "" {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", r.opts.Dir, err)
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(r.opts.Dir); err != nil {
		return fmt.Errorf("watch %s: %w", r.opts.Dir, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			r.opts.Log.V(1).Info("configuration directory changed", "event", ev.String())
			timer.Reset(r.opts.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.opts.Log.Error(err, "watching the configuration directory", "dir", r.opts.Dir)
		case <-timer.C:
			_ = r.Reload() // logged and counted; the last good engine stays
		}
	}
}
