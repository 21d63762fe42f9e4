// Package server runs meshinject's admission service: controller-runtime's
// webhook.Server with the injection handler on /inject, a plain side port
// with /metrics, /healthz and /readyz, configuration hot reload, TLS from a
// certificate directory (reloaded on change) or self-managed, and graceful
// shutdown when the context ends.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/meshinject/meshinject/internal/nodepolicy"
	"github.com/meshinject/meshinject/internal/reload"
	"github.com/meshinject/meshinject/internal/selftls"
	"github.com/meshinject/meshinject/webhook"
)

// TLS modes.
const (
	TLSModeCertDir     = "cert-dir"
	TLSModeSelfManaged = "self-managed"
)

// Options configures Run. Zero values take the documented defaults.
type Options struct {
	// Host is the address the webhook listens on. Default "" (all).
	Host string
	// Port is the webhook's HTTPS port. Default 9443.
	Port int
	// HealthAddr is the plain-HTTP side port for /metrics, /healthz and
	// /readyz. Default ":8080".
	HealthAddr string
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
	// NativeSidecars is "auto" (default), "true" or "false". auto follows
	// the nodes' kubelet versions, or means on without cluster access.
	NativeSidecars string
	// Kubeconfig is a kubeconfig file; default: in-cluster when running in a
	// pod, else no cluster access.
	Kubeconfig string
	// EnableHTTP2 serves HTTP/2 (off by default: the HTTP/2 rapid-reset
	// CVEs).
	EnableHTTP2 bool
	// EnableProfiling serves net/http/pprof under /debug/pprof/ on the side
	// port. Default off.
	EnableProfiling bool
	// MaxPodBytes is the largest pod (as JSON) injected; larger ones are
	// refused. Default webhook.DefaultMaxPodBytes (768 KiB).
	MaxPodBytes int
	// DrainDelay is how long the webhook keeps serving once ctx ends, with
	// readiness failing and connections closed after each response, before
	// it stops accepting and finishes in-flight reviews. Default 5s;
	// negative: none.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the side port's shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// Log is the logger. Default: discard.
	Log logr.Logger
}

func (o *Options) setDefaults() {
	if o.Port == 0 {
		o.Port = 9443
	}
	if o.HealthAddr == "" {
		o.HealthAddr = ":8080"
	}
	if o.TLSMode == "" {
		o.TLSMode = TLSModeCertDir
	}
	if o.CertDir == "" {
		o.CertDir = "/etc/meshinject/tls"
	}
	if o.NativeSidecars == "" {
		o.NativeSidecars = "auto"
	}
	if o.DrainDelay == 0 {
		o.DrainDelay = 5 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
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

// Run serves until ctx ends, then drains (Options.DrainDelay), stops
// accepting, finishes in-flight reviews and returns. Everything that can
// fail is done before a goroutine starts, so an early return leaves none
// behind (TestRunLeavesNoGoroutine).
func Run(ctx context.Context, o Options) error {
	o.setDefaults()
	log := o.Log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	engines, err := reload.New(reload.Options{Dir: o.ConfigDir, Revision: o.Revision, Registerer: reg, Log: log.WithName("config")})
	if err != nil {
		return fmt.Errorf("load configuration: %w", err)
	}
	metrics, err := webhook.NewMetrics(reg)
	if err != nil {
		return err
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	native, nodes, err := o.nativePolicy(client, log)
	if err != nil {
		return err
	}
	handler, err := webhook.NewHandler(webhook.Options{Engines: engines, Native: native, Metrics: metrics, MaxPodBytes: o.MaxPodBytes})
	if err != nil {
		return err
	}
	lis, err := listen(o)
	if err != nil {
		return err
	}
	t, err := o.setupTLS(ctx, client, reg, log.WithName("tls"))
	if err != nil {
		_ = lis.Close()
		return err
	}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.Host, Port: o.Port, TLSOpts: t.opts})
	drain := &drainer{delay: o.DrainDelay}
	reviews := drain.wrap(webhook.NewHTTPHandler(webhook.NewWebhook(handler), webhook.HTTPOptions{}))
	srv.Register("/inject", reviews)
	srv.Register("/inject/", reviews)
	checks := []func() error{drain.check, func() error {
		if err := srv.StartedChecker()(nil); err != nil {
			return fmt.Errorf("webhook not serving TLS yet: %w", err)
		}
		return nil
	}, t.ready, engines.Check}
	if nodes != nil {
		checks = append(checks, nodes.Check)
		t.starts = append(t.starts, nodes.Start)
	}
	side := &http.Server{Handler: o.sideMux(prometheus.Gatherers{reg, ctrlmetrics.Registry}, checks), ReadHeaderTimeout: 10 * time.Second}

	g, ctx := errgroup.WithContext(ctx)
	for _, start := range t.starts {
		g.Go(func() error { return start(ctx) })
	}
	// The webhook and side port outlive ctx by the drain delay.
	serving, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error {
		drain.run(ctx, stopServing, func() bool { return srv.StartedChecker()(nil) == nil }, log)
		return nil
	})
	g.Go(func() error { return engines.Run(ctx) })
	g.Go(func() error { return srv.Start(serving) })
	g.Go(func() error {
		if err := side.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-serving.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.ShutdownTimeout)
		defer cancel()
		return side.Shutdown(sctx)
	})
	log.Info("serving", "port", o.Port, "healthAddr", lis.Addr().String(), "tlsMode", o.TLSMode, "revision", o.Revision)
	return g.Wait()
}

// servingTLS is the webhook's TLS set up: its options, its readiness, and
// what runs while it serves.
type servingTLS struct {
	opts   []func(*tls.Config)
	ready  func() error
	starts []func(context.Context) error
}

// setupTLS loads or provisions the serving certificate. Nothing starts.
func (o *Options) setupTLS(ctx context.Context, client kubernetes.Interface, reg prometheus.Registerer, log logr.Logger) (servingTLS, error) {
	t := servingTLS{ready: func() error { return nil }, opts: []func(*tls.Config){func(c *tls.Config) {
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
	case TLSModeSelfManaged:
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
		return t, fmt.Errorf("--tls-mode %q: want %s or %s", o.TLSMode, TLSModeCertDir, TLSModeSelfManaged)
	}
	return t, nil
}

// sideMux serves /metrics, /healthz, /readyz (every check must pass) and,
// when enabled, /debug/pprof/.
func (o *Options) sideMux(gatherers prometheus.Gatherers, checks []func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	if o.EnableProfiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, check := range checks {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// client is the Kubernetes client, or nil without cluster access.
func (o *Options) client() (kubernetes.Interface, error) {
	restCfg, err := o.restConfig()
	if err != nil || restCfg == nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// listen opens the side port and checks that the webhook's port is free,
// so a port in use fails here, naming the flag that moves it, before
// anything starts or claims to serve. (controller-runtime binds the
// webhook's port itself when it starts.)
func listen(o Options) (net.Listener, error) {
	addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook port: listen on %s: %w (move it with --port or --host)", addr, err)
	}
	_ = probe.Close()
	lis, err := net.Listen("tcp", o.HealthAddr)
	if err != nil {
		return nil, fmt.Errorf("side port: listen on %s: %w (move it with --health-addr)", o.HealthAddr, err)
	}
	return lis, nil
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
