// Package reload keeps an injection engine built from a configuration
// directory (a mounted ConfigMap with the keys config, values and mesh) and
// rebuilds it when the directory changes.
//
// The directory is watched, not the files: the kubelet updates a mounted
// ConfigMap by swapping the ..data symlink. The directories the files'
// symlinks resolve to are watched too, so a write through a symlink is seen,
// and the directory is read again every Resync, so a directory deleted and
// created again is found. A change is debounced, loaded and validated in
// full; a valid config is swapped in atomically. A config that fails is read
// again after the debounce before it counts: a writer caught halfway is not
// a failure. A failure is logged and counted once, the last good config
// stays in force and the stale gauge is 1 until the directory holds a good
// one. A file present at start that is later missing, and an empty file, are
// failures, never a silent return to the defaults. Reviews keep the engine
// they started with.
package reload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/promreg"
)

// File names in the configuration directory: the keys of Istio's
// istio-sidecar-injector (config, values) and istio (mesh) ConfigMaps.
const (
	fileConfig = "config"
	fileValues = "values"
	fileMesh   = "mesh"
)

// Options configures a Reloader.
type Options struct {
	// Dir is the configuration directory. Empty means the embedded defaults,
	// never reloaded.
	Dir string
	// Revision is the control-plane revision ("" for the default one).
	Revision string
	// StrictValues refuses a configuration whose values carry a key
	// injection does not read; by default it loads, and each such key is
	// logged and counted in meshinject_config_warnings.
	StrictValues bool
	// Debounce is how long the directory must be quiet before a reload,
	// and how long a failed load waits to be read again before it counts.
	// Default 250ms.
	Debounce time.Duration
	// Resync is how often the directory is read again without an event:
	// it finds a directory that was deleted and created again. Unchanged
	// files cost a read and a comparison. Default 5s.
	Resync time.Duration
	// Registerer receives meshinject_config_reloads_total{result},
	// meshinject_config_stale, meshinject_config_info{hash} and
	// meshinject_config_warnings. Default: not registered.
	Registerer prometheus.Registerer
	// Log receives reload outcomes. Default: discard.
	Log logr.Logger
}

// reloader holds the current engine. It implements webhook.EngineSource.
type reloader struct {
	opts    Options
	current atomic.Pointer[inject.Engine]
	reloads *prometheus.CounterVec
	stale   prometheus.Gauge
	info    *prometheus.GaugeVec
	lookups *prometheus.CounterVec
	// warnings counts the configuration in force's warnings.
	warnings prometheus.Gauge
	// observer counts the current engine's render cache lookups.
	observer cacheObserver

	// required are the files present at the first load.
	required [len(fileNames)]bool
	// loaded is what the engine in force was built from; refused the last
	// files whose failure was counted; suspect a failure not yet confirmed.
	loaded, refused *snapshot
	suspect         *snapshot
	suspectAt       time.Time

	mu       sync.Mutex
	watchErr error
}

// New loads the configuration once; it fails if that configuration is
// invalid, since there is no last good one to fall back on.
func New(opts Options) (*reloader, error) {
	if opts.Debounce == 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Second
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	r := &reloader{opts: opts,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshinject_config_reloads_total",
			Help: "Configuration reloads, by result (success or failure). A failure is counted once per refused content.",
		}, []string{"result"}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshinject_config_stale",
			Help: "1 when the configuration in force is not the directory's: a change was refused or the directory cannot be watched.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshinject_config_info",
			Help: "1 for the hash of the configuration in force (the config audit annotation of the reviews it answers).",
		}, []string{"hash"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshinject_render_cache_lookups_total",
			Help: "Templates rendered for reviews, by result: hit when the parsed output came from the render cache, miss when it was executed and parsed.",
		}, []string{"result"}),
		warnings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshinject_config_warnings",
			Help: "Warnings of the configuration in force: values keys injection does not read (logged at each load; --strict-values refuses them).",
		}),
	}
	if opts.Registerer != nil {
		if err := errors.Join(promreg.Register(opts.Registerer, &r.reloads), promreg.Register(opts.Registerer, &r.stale),
			promreg.Register(opts.Registerer, &r.info), promreg.Register(opts.Registerer, &r.lookups),
			promreg.Register(opts.Registerer, &r.warnings)); err != nil {
			return nil, fmt.Errorf("register configuration metrics: %w", err)
		}
	}
	r.observer = cacheObserver{hit: r.lookups.WithLabelValues("hit"), miss: r.lookups.WithLabelValues("miss")}
	var s *snapshot
	if opts.Dir != "" {
		var err error
		if s, err = read(opts.Dir); err != nil {
			return nil, err
		}
		r.required = s.present
	}
	e, err := r.build(s)
	if err != nil {
		return nil, err
	}
	r.use(e)
	r.loaded = s
	return r, nil
}

// use puts e in force.
func (r *reloader) use(e *inject.Engine) {
	r.current.Store(e)
	r.info.Reset()
	r.info.WithLabelValues(e.Config().Hash).Set(1)
	warnings := e.Config().Warnings
	r.warnings.Set(float64(len(warnings)))
	for _, w := range warnings {
		r.opts.Log.Info("configuration warning: "+w, "hash", e.Config().Hash)
	}
}

// Engine returns the engine of the last good configuration.
func (r *reloader) Engine() *inject.Engine { return r.current.Load() }

// Check reports why configuration changes cannot be seen (the directory is
// gone or cannot be watched), or nil: a readiness check. A refused change
// does not fail it: every replica reads the same directory, and the last
// good configuration serves; meshinject_config_stale reports it.
func (r *reloader) Check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watchErr
}

// build checks the files, then loads and validates their configuration;
// nil means the embedded defaults.
func (r *reloader) build(s *snapshot) (*inject.Engine, error) {
	src := config.Sources{Revision: r.opts.Revision, StrictValues: r.opts.StrictValues}
	if s != nil {
		if err := s.check(r.required); err != nil {
			return nil, err
		}
		src.InjectionConfig, src.Values, src.Mesh = s.data[0], s.data[1], s.data[2]
	}
	cfg, err := config.Load(src)
	if err != nil {
		return nil, err
	}
	// Validated on an engine of its own, so the sample pods are not counted
	// as reviews' render cache lookups.
	e, err := inject.New(inject.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return inject.New(inject.Options{Config: cfg, RenderCacheObserver: r.observer})
}

// cacheObserver counts render cache lookups in
// meshinject_render_cache_lookups_total.
type cacheObserver struct{ hit, miss prometheus.Counter }

// Lookup implements inject.CacheObserver.
func (c cacheObserver) Lookup(hit bool) {
	if hit {
		c.hit.Inc()
	} else {
		c.miss.Inc()
	}
}

// attempt reads the directory and swaps in a changed, valid configuration.
// It returns true when a failure is not confirmed yet: the caller reads
// again after the debounce.
func (r *reloader) attempt(now time.Time) (again bool) {
	s, err := read(r.opts.Dir)
	if err != nil {
		s = &snapshot{readErr: err.Error()} // so a lasting read error is confirmed and counted once
	}
	switch {
	case s.equal(r.loaded):
		r.suspect, r.refused = nil, nil
		r.setStale()
		return false
	case s.equal(r.refused):
		return false // counted already
	case err == nil:
		var e *inject.Engine
		if e, err = r.build(s); err == nil {
			r.use(e)
			r.loaded, r.refused, r.suspect = s, nil, nil
			r.setStale()
			r.reloads.WithLabelValues("success").Inc()
			r.opts.Log.Info("configuration reloaded", "dir", r.opts.Dir, "hash", e.Config().Hash)
			return false
		}
	}
	if r.suspect == nil || !s.equal(r.suspect) {
		r.suspect, r.suspectAt = s, now
		return true
	}
	if now.Sub(r.suspectAt) < r.opts.Debounce {
		return true
	}
	r.refused, r.suspect = s, nil
	r.setStale()
	r.reloads.WithLabelValues("failure").Inc()
	r.opts.Log.Error(err, "configuration change refused; the last good configuration stays in force", "dir", r.opts.Dir)
	return false
}

func (r *reloader) setStale() {
	r.mu.Lock()
	stale := r.refused != nil || r.watchErr != nil
	r.mu.Unlock()
	if stale {
		r.stale.Set(1)
	} else {
		r.stale.Set(0)
	}
}

func (r *reloader) setWatchErr(err error) {
	r.mu.Lock()
	changed := (err == nil) != (r.watchErr == nil)
	r.watchErr = err
	r.mu.Unlock()
	r.setStale()
	switch {
	case changed && err != nil:
		r.opts.Log.Error(err, "configuration changes cannot be seen; the last good configuration stays in force")
	case changed:
		r.opts.Log.Info("watching the configuration directory again", "dir", r.opts.Dir)
	}
}

// Run watches the directory until ctx is done. With no directory it only
// waits for ctx.
func (r *reloader) Run(ctx context.Context) error {
	if r.opts.Dir == "" {
		<-ctx.Done()
		return nil
	}
	w, err := newWatcher(r.opts.Dir)
	if err != nil {
		return err
	}
	defer w.close()
	r.setWatchErr(w.sync())
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	resync := time.NewTicker(r.opts.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			r.opts.Log.V(1).Info("configuration directory changed", "event", ev.String())
			debounce.Reset(r.opts.Debounce)
			continue
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			r.opts.Log.Error(err, "watching the configuration directory", "dir", r.opts.Dir)
			continue
		case <-debounce.C:
		case <-resync.C:
		}
		werr := w.sync()
		r.setWatchErr(werr)
		if werr == nil && r.attempt(time.Now()) {
			debounce.Reset(r.opts.Debounce)
		}
	}
}

// errDirGone wraps the reason the directory cannot be watched.
var errDirGone = errors.New("configuration directory cannot be watched")

func dirError(dir string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", errDirGone, dir)
	}
	return fmt.Errorf("%w: %s: %w", errDirGone, dir, err)
}
