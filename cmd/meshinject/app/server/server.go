// Package server runs meshinject's admission service on a controller-
// runtime manager: its webhook.Server with the injection handler on
// /inject, its metrics server (/metrics), its health-probe server
// (/healthz, /readyz) and optional pprof server, with configuration hot
// reload, TLS from a certificate directory (reloaded on change) or self-
// managed, and node-following native sidecars as the manager's runnables,
// and a drain before the graceful shutdown when the context ends.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/meshinject/meshinject/certs/selftls"
	"github.com/meshinject/meshinject/cmd/meshinject/app/reload"
	"github.com/meshinject/meshinject/cmd/meshinject/app/server/nodepolicy"
	"github.com/meshinject/meshinject/internal/promreg"
	"github.com/meshinject/meshinject/webhook"
)

// TLS modes.
const (
	TLSModeCertDir     = "cert-dir"
	tLSModeSelfManaged = "self-managed"
)

// Options configures Run. Zero values take the documented defaults.
type Options struct {
	// Host is the address the webhook listens on. Default "" (all).
	Host string
	// Port is the webhook's HTTPS port. Default DefaultPort (9443).
	Port int
	// MetricsAddr is the address of /metrics; "0" turns it off. Default
	// ":8080".
	MetricsAddr string
	// MetricsSecure serves /metrics over HTTPS (a self-signed certificate)
	// to clients the API server authenticates (TokenReview) and authorizes
	// (SubjectAccessReview: get on the non-resource URL /metrics), as
	// kubebuilder scaffolds it. Needs cluster access. Default off: plain
	// HTTP.
	MetricsSecure bool
	// HealthAddr is the plain-HTTP address of /healthz and /readyz.
	// Default ":8081".
	HealthAddr string
	// PprofAddr is the plain-HTTP address of net/http/pprof under
	// /debug/pprof/. Default "" (off).
	PprofAddr string
	// TLSMode is "cert-dir" (default) or "self-managed".
	TLSMode string
	// CertDir holds tls.crt and tls.key in cert-dir mode; they are reloaded
	// when they change. Default "/etc/meshinject/tls".
	CertDir string
	// SelfManaged configures self-managed TLS.
	SelfManaged selftls.Options
	// ConfigDir holds the config, values and mesh files. Default: the
	// embedded defaults, not reloaded.
	ConfigDir string
	// Revision is the control-plane revision; "" is the default revision.
	Revision string
	// StrictValues refuses values keys injection does not read. Default:
	// they load, logged and counted in meshinject_config_warnings.
	StrictValues bool
	// NativeSidecars is "auto" (default), "true" or "false". auto follows
	// the nodes' kubelet versions, or means on without cluster access.
	NativeSidecars string
	// Kubeconfig is a kubeconfig file; default: in-cluster when running in a
	// pod, else no cluster access.
	Kubeconfig string
	// EnableHTTP2 serves HTTP/2 (off by default: the HTTP/2 rapid-reset
	// CVEs).
	EnableHTTP2 bool
	// MetricsNamespaceLabel adds a namespace label to the injection
	// counters. Default off (a series per namespace).
	MetricsNamespaceLabel bool
	// MaxPodBytes is the largest pod (as JSON) injected; larger ones are
	// refused. Default webhook.DefaultMaxPodBytes (768 KiB).
	MaxPodBytes int
	// DrainDelay is how long the webhook keeps serving once ctx ends, with
	// readiness failing and connections closed after each response, before
	// it stops accepting and finishes in-flight reviews. Default 0: none
	// (serve's --drain-delay defaults to DefaultDrainDelay).
	DrainDelay time.Duration
	// ShutdownTimeout bounds the graceful shutdown after the drain: the
	// time in-flight reviews and the runnables get to finish. Default
	// DefaultShutdownTimeout (30s).
	ShutdownTimeout time.Duration
	// Log is the logger. Default: discard.
	Log logr.Logger
}

// The defaults of Options, which serve's flags take too.
const (
	DefaultPort            = 9443
	DefaultMetricsAddr     = ":8080"
	DefaultHealthAddr      = ":8081"
	DefaultCertDir         = "/etc/meshinject/tls"
	DefaultNativeSidecars  = "auto"
	DefaultDrainDelay      = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// setDefaults fills the zero fields with the Default constants; a zero
// DrainDelay is none, so only serve's flag sets DefaultDrainDelay.
func (o *Options) setDefaults() {
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	if o.HealthAddr == "" {
		o.HealthAddr = DefaultHealthAddr
	}
	if o.TLSMode == "" {
		o.TLSMode = TLSModeCertDir
	}
	if o.CertDir == "" {
		o.CertDir = DefaultCertDir
	}
	if o.NativeSidecars == "" {
		o.NativeSidecars = DefaultNativeSidecars
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	o.SelfManaged.SetDefaults(o.Revision)
}

// tls12Suites are the TLS 1.2 suites served: forward-secret AEAD only (Go's
// defaults still offer two CBC-SHA1 ones). TLS 1.3 suites are not
// configurable and all qualify.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// offline is the manager's REST config without cluster access: an address
// that never resolves. Nothing added to the manager then reads the cluster
// (the node policy and self-managed TLS need access and are not added), so
// it is never dialled; if it were, the error would name it.
var offline = &rest.Config{Host: "https://no-cluster-access.invalid"}

// Run serves until ctx ends, then drains (Options.DrainDelay), stops
// accepting, finishes in-flight reviews and returns. Everything that can
// fail is done before a goroutine starts, so an early return leaves none
// behind (TestRunLeavesNoGoroutine).
func Run(ctx context.Context, o Options) error {
	o.setDefaults()
	log := o.Log
	defer redirectStdLog(log.WithName("net/http"))()
	reg := ctrlmetrics.Registry
	if err := registerRuntime(reg); err != nil {
		return err
	}
	engines, err := reload.New(reload.Options{Dir: o.ConfigDir, Revision: o.Revision, StrictValues: o.StrictValues, Registerer: reg, Log: log.WithName("config")})
	if err != nil {
		return fmt.Errorf("load configuration: %w", err)
	}
	restCfg, client, err := o.client()
	if err != nil {
		return err
	}
	if o.MetricsSecure && client == nil {
		return errors.New("--metrics-secure needs cluster access (--kubeconfig, or running in a pod): the API server authenticates and authorizes the scrapers")
	}
	native, nodes, err := o.nativePolicy(client, log)
	if err != nil {
		return err
	}
	if err := checkPorts(o); err != nil {
		return err
	}
	t, err := o.setupTLS(ctx, client, reg, log.WithName("tls"))
	if err != nil {
		return err
	}
	drain := &drainer{delay: o.DrainDelay}
	mgr, srv, probes, err := o.newManager(restCfg, t, drain)
	if err != nil {
		t.abort()
		return err
	}
	handler, runnables, err := o.newHandler(mgr, client != nil, engines, native, reg)
	if err != nil {
		t.abort()
		return err
	}
	reviews := drain.wrap(webhook.NewHTTPHandler(webhook.NewWebhook(handler), webhook.HTTPOptions{Registerer: reg, Log: log.WithName("admission")}))
	srv.Register("/inject", reviews)
	srv.Register("/inject/", reviews)
	runnables = append(runnables, t.starts...)
	runnables = append(runnables, engines.Run)
	checks := map[string]func() error{"drain": drain.check, "webhook": webhookStarted(srv), "config": engines.Check, "tls": t.ready}
	if nodes != nil {
		runnables = append(runnables, nodes.Start)
		checks["nodes"] = nodes.Check
	}
	if err := errors.Join(registerReady(reg, checks), addAll(mgr, probes, runnables, checks, log.WithName("readiness"))); err != nil {
		t.abort()
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	// The manager outlives ctx by the drain delay.
	serving, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error {
		drain.run(ctx, stopServing, func() bool { return srv.StartedChecker()(nil) == nil }, log)
		return nil
	})
	g.Go(func() error { return mgr.Start(serving) })
	log.Info("serving", "port", o.Port, "metricsAddr", o.MetricsAddr, "healthAddr", o.HealthAddr, "tlsMode", o.TLSMode, "revision", o.Revision)
	return g.Wait()
}

// newManager is the manager serving the webhook (returned too, for its
// readiness and handlers), metrics, health probes (their checks returned)
// and pprof. Its health and pprof listeners are open once it returns;
// nothing has started.
func (o *Options) newManager(cfg *rest.Config, t servingTLS, drain *drainer) (manager.Manager, ctrlwebhook.Server, *probes, error) {
	if cfg == nil {
		cfg = offline
	}
	mgr, err := manager.New(cfg, manager.Options{
		Logger:                  o.Log,
		WebhookServer:           ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.Host, Port: o.Port, TLSOpts: t.opts}),
		Metrics:                 o.metricsOptions(),
		HealthProbeBindAddress:  "0", // served by probes
		PprofBindAddress:        o.PprofAddr,
		GracefulShutdownTimeout: &o.ShutdownTimeout,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("manager: %w", err)
	}
	srv := mgr.GetWebhookServer() // also adds it to the manager
	p := newProbes()
	hs, err := p.server(o.HealthAddr, &o.ShutdownTimeout)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := mgr.Add(hs); err != nil {
		_ = hs.Listener.Close()
		return nil, nil, nil, fmt.Errorf("manager: %w", err)
	}
	return mgr, srv, p, nil
}

// newHandler is the injection handler, with its metrics and, with cluster
// access, its events (through the manager's event recorder, events.k8s.io,
// which aggregates repeats into a series), and what it needs running.
func (o *Options) newHandler(mgr manager.Manager, cluster bool, engines webhook.EngineSource, native webhook.NativeSidecarPolicy, reg prometheus.Registerer) (*webhook.Handler, []func(context.Context) error, error) {
	metrics, err := webhook.NewMetrics(reg, webhook.MetricsOptions{NamespaceLabel: o.MetricsNamespaceLabel})
	if err != nil {
		return nil, nil, err
	}
	var events *webhook.Events
	var runnables []func(context.Context) error
	if cluster {
		if events, err = webhook.NewEvents(mgr.GetEventRecorder("meshinject"), 0, reg); err != nil {
			return nil, nil, err
		}
		runnables = append(runnables, events.Run)
	}
	handler, err := webhook.NewHandler(webhook.Options{Engines: engines, Native: native, Metrics: metrics, Events: events, MaxPodBytes: o.MaxPodBytes})
	if err != nil {
		return nil, nil, err
	}
	return handler, runnables, nil
}

// metricsOptions serve /metrics plainly, or with authentication and
// authorization (MetricsSecure).
func (o *Options) metricsOptions() metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing, m.FilterProvider = true, filters.WithAuthenticationAndAuthorization
	}
	return m
}

// addAll adds the runnables to mgr and the readiness checks to p.
func addAll(mgr manager.Manager, p *probes, runnables []func(context.Context) error, checks map[string]func() error, log logr.Logger) error {
	for _, r := range runnables {
		if err := mgr.Add(manager.RunnableFunc(r)); err != nil {
			return fmt.Errorf("manager: %w", err)
		}
	}
	for name, c := range checks {
		p.ready[name] = readiness(name, c, log)
	}
	return nil
}

// registerRuntime exports the Go runtime's and the process's metrics
// (go_*, process_*: heap, GC, allocations, RSS, open files), which
// controller-runtime's registry leaves out.
func registerRuntime(reg prometheus.Registerer) error {
	goc, procc := collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	if err := errors.Join(promreg.Register(reg, &goc), promreg.Register(reg, &procc)); err != nil {
		return fmt.Errorf("register runtime metrics: %w", err)
	}
	return nil
}

// registerReady exports meshinject_ready{check}: 1 while the check
// passes, evaluated at each scrape, so an alert can tell that no replica
// is ready without the kubelet's view.
func registerReady(reg prometheus.Registerer, checks map[string]func() error) error {
	for name, check := range checks {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "meshinject_ready",
			Help:        "1 while the readiness check passes, 0 while it fails (/readyz?verbose gives the reason).",
			ConstLabels: prometheus.Labels{"check": name},
		}, func() float64 {
			if check() != nil {
				return 0
			}
			return 1
		})
		if err := promreg.Register(reg, &g); err != nil {
			return fmt.Errorf("register readiness metric: %w", err)
		}
	}
	return nil
}

// readiness adapts a readiness check to the manager's: /readyz withholds
// the reason a check fails, so each change of its answer is logged with
// the reason.
func readiness(name string, check func() error, log logr.Logger) healthz.Checker {
	var last atomic.Pointer[string]
	return func(*http.Request) error {
		err := check()
		answer := "ok"
		if err != nil {
			answer = err.Error()
		}
		if prev := last.Swap(&answer); prev == nil && err != nil || prev != nil && *prev != answer {
			log.Info("readiness changed", "check", name, "answer", answer)
		}
		return err
	}
}

// webhookStarted is ready once the webhook serves TLS.
func webhookStarted(srv ctrlwebhook.Server) func() error {
	return func() error {
		if err := srv.StartedChecker()(nil); err != nil {
			return fmt.Errorf("webhook not serving TLS yet: %w", err)
		}
		return nil
	}
}

// servingTLS is the webhook's TLS set up: its options, its readiness, and
// what runs while it serves.
type servingTLS struct {
	opts   []func(*tls.Config)
	ready  func() error
	starts []func(context.Context) error
	// abort releases what set-up holds when Run returns before starting.
	abort func()
}

// setupTLS loads or provisions the serving certificate. Nothing starts.
func (o *Options) setupTLS(ctx context.Context, client kubernetes.Interface, reg prometheus.Registerer, log logr.Logger) (servingTLS, error) {
	t := servingTLS{ready: func() error { return nil }, abort: func() {}, opts: []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = tls12Suites
		if !o.EnableHTTP2 {
			c.NextProtos = []string{"http/1.1"}
		}
	}}}
	switch o.TLSMode {
	case TLSModeCertDir:
		cw, err := newCertDirWatcher(o.CertDir, reg, log)
		if err != nil {
			return t, err
		}
		t.opts = append(t.opts, func(c *tls.Config) { c.GetCertificate = cw.GetCertificate })
		t.starts = append(t.starts, cw.Start)
		t.abort = func() { abortWatcher(ctx, cw) }
	case tLSModeSelfManaged:
		if client == nil {
			return t, errors.New("--tls-mode=self-managed needs cluster access (--kubeconfig, or running in a pod)")
		}
		certs, err := selftls.New(client, o.SelfManaged, reg, log)
		if err != nil {
			return t, err
		}
		if err := certs.Ensure(ctx); err != nil {
			return t, err
		}
		t.opts = append(t.opts, func(c *tls.Config) { c.GetCertificate = certs.GetCertificate })
		t.ready = certs.Ready
		t.starts = append(t.starts, certs.Start)
	default:
		return t, fmt.Errorf("--tls-mode %q: want %s or %s", o.TLSMode, TLSModeCertDir, tLSModeSelfManaged)
	}
	return t, nil
}

// client is the REST config and Kubernetes client, or nils without
// cluster access.
func (o *Options) client() (*rest.Config, kubernetes.Interface, error) {
	restCfg, err := o.restConfig()
	if err != nil || restCfg == nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return restCfg, client, nil
}

// checkPorts checks that every address Run binds is free, so a port in
// use fails here, naming the flag that moves it, before anything starts
// or claims to serve. (The manager binds them itself.)
func checkPorts(o Options) error {
	addrs := []struct{ name, addr, flags string }{
		{"webhook port", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), "--port or --host"},
		{"metrics address", o.MetricsAddr, "--metrics-addr"},
		{"health address", o.HealthAddr, "--health-addr"},
		{"pprof address", o.PprofAddr, "--pprof-addr"},
	}
	for _, a := range addrs {
		if a.addr == "" || a.addr == "0" {
			continue
		}
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fmt.Errorf("%s: listen on %s: %w (move it with %s)", a.name, a.addr, err, a.flags)
		}
		_ = l.Close()
	}
	return nil
}

func (o *Options) restConfig() (*rest.Config, error) {
	if o.Kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", o.Kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, nil
	}
	return c, err
}

// nativePolicy is the native-sidecar policy, and the node policy to run
// and wait for when it follows the nodes (nil otherwise). Nothing starts
// here.
func (o *Options) nativePolicy(client kubernetes.Interface, log logr.Logger) (webhook.NativeSidecarPolicy, *nodepolicy.Auto, error) {
	switch o.NativeSidecars {
	case "true":
		return webhook.Always(true), nil, nil
	case "false":
		return webhook.Always(false), nil, nil
	case "auto":
		if client == nil {
			log.Info("no cluster access: native sidecars on")
			return webhook.Always(true), nil, nil
		}
		auto, err := nodepolicy.New(client)
		if err != nil {
			return nil, nil, err
		}
		return auto, auto, nil
	}
	return nil, nil, fmt.Errorf("--native-sidecars %q: want auto, true or false", o.NativeSidecars)
}
