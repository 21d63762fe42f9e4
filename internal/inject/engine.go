package inject

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/templates"
)

// Options configures an Engine.
type Options struct {
	// Config is the loaded configuration. Required.
	Config *config.Config
	// RenderCacheSize bounds the cache of parsed template output, keyed by
	// the rendered text (replicas of one workload render identically).
	// Default 64 entries (32 workloads' output, under two keys each; why
	// not more: docs/performance.md, "A mix of workloads"). A negative
	// value disables the cache.
	RenderCacheSize int
	// RenderCacheObserver is told whether each render found its parsed
	// output in the cache. Default: nobody.
	RenderCacheObserver CacheObserver
}

// CacheObserver counts render cache lookups.
type CacheObserver interface {
	// Lookup is called once per rendered template: hit when its parsed
	// output came from the cache.
	Lookup(hit bool)
}

func (o *Options) setDefaults() {
	if o.RenderCacheSize == 0 {
		o.RenderCacheSize = 64
	}
}

// Engine injects pods. It is safe for concurrent use; its config is
// read-only.
type Engine struct {
	cfg      *config.Config
	cache    *renderCache
	observer CacheObserver
	// pure are the templates looked up by renderKey without executing them.
	pure map[string]bool
	// meshProxyConfig is PROXY_CONFIG for pods without proxy.istio.io/config.
	meshProxyConfig string
}

// New returns an Engine for opts.
func New(opts Options) (*Engine, error) {
	opts.setDefaults()
	if opts.Config == nil {
		return nil, errors.New("inject: Options.Config is required")
	}
	cfg := opts.Config
	return &Engine{
		cfg:             cfg,
		cache:           newRenderCache(opts.RenderCacheSize),
		observer:        opts.RenderCacheObserver,
		pure:            pureNames(cfg.Injection.Templates),
		meshProxyConfig: templates.ProtoToJSON(cfg.Mesh.GetDefaultConfig(), cfg.DefaultProxyConfig) + "\n",
	}, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() *config.Config { return e.cfg }

// Workload names the object that owns a pod template, when the caller knows
// it (the CLI does; the webhook derives it from owner references).
type Workload struct {
	metav1.TypeMeta
	// Name is the workload's name.
	Name string
}

// Request is one pod to inject.
type Request struct {
	// Pod is the pod to inject. Inject mutates it and returns it in the Result.
	Pod *corev1.Pod
	// Namespace is the pod's namespace; when empty, Pod.Namespace, else
	// "default".
	Namespace string
	// Workload is the owning workload; nil derives it from owner references.
	Workload *Workload
	// NativeSidecars selects native sidecars (istio-proxy as an init container
	// with restartPolicy Always) unless the pod's
	// sidecar.istio.io/nativeSidecar annotation says otherwise.
	NativeSidecars bool
	// ProxyEnv sets extra proxy environment variables, e.g. from webhook path
	// parameters: ISTIO_META_CLUSTER_ID and ISTIO_META_NETWORK replace the
	// configured values, other names are added.
	ProxyEnv map[string]string
	// ForcePolicy ignores the injection policy and selectors, injecting unless
	// the pod opts out explicitly, as the offline CLI does.
	ForcePolicy bool
}

// Result is the outcome of Inject.
type Result struct {
	// Pod is the injected pod, or the unchanged pod when Skipped.
	Pod *corev1.Pod
	// Skipped is true when the decision was not to inject; Reason says why.
	Skipped bool
	// Reason is a short human-readable reason for a skip.
	Reason string
	// SkipKind is a bounded label for the skip reason (for metrics).
	SkipKind string
	// Templates are the templates applied, in order.
	Templates []string
	// Warnings are non-fatal notes (e.g. an unrecognised inject value).
	Warnings []string
}

// Error is an injection error that names the annotation or field and the
// value at fault.
type Error struct {
	// Field is the annotation or field name, e.g. "sidecar.istio.io/proxyCPU".
	Field string
	// Value is the offending value.
	Value string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %v", e.Field, e.Value, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func fieldError(field, value string, err error) error {
	return &Error{Field: field, Value: value, Err: err}
}

// Inject decides whether req.Pod is injected and, if so, injects it.
func (e *Engine) Inject(req Request) (Result, error) {
	pod := req.Pod
	if pod == nil {
		return Result{}, errors.New("inject: request has no pod")
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	d := decide(e.cfg, pod, ns, req.ForcePolicy)
	res := Result{Pod: pod, Warnings: d.Warnings}
	if !d.Inject {
		res.Skipped, res.Reason, res.SkipKind = true, d.Reason, d.Kind
		return res, nil
	}
	var previous []corev1.Container
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		previous = injectedContainers(pod)
		if err := Uninject(pod); err != nil {
			return Result{}, fmt.Errorf("remove previous injection: %w", err)
		}
	}
	names, err := e.selectTemplates(pod)
	if err != nil {
		return Result{}, err
	}
	res.Templates = names
	s, err := e.resolve(pod, ns, req)
	if err != nil {
		return Result{}, err
	}
	if err := e.apply(pod, s, names, previous, &res.Warnings); err != nil {
		return Result{}, err
	}
	return res, nil
}
