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
	"sync/atomic"
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

	"github.com/meshinject/meshinject/internal/reload"
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
	SelfManaged SelfManagedOptions
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
	// Ready, when set, is called once the service is ready (tests).
	Ready func(webhookAddr, healthAddr string)
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
	o.SelfManaged.setDefaults(o.Revision)
}

// tls12Suites are the TLS 1.2 suites served: forward-secret AEAD only (Go's
// defaults still offer two CBC-SHA1 ones). TLS 1.3 suites are not
// configurable and all qualify.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Run serves until ctx ends, then stops accepting, finishes in-flight
// reviews and returns.
func Run(ctx context.Context, o Options) error {
	o.setDefaults()
	log := o.Log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gatherers := prometheus.Gatherers{reg, ctrlmetrics.Registry}

	engines, err := reload.New(reload.Options{Dir: o.ConfigDir, Revision: o.Revision, Registerer: reg, Log: log.WithName("config")})
	if err != nil {
		return fmt.Errorf("load configuration: %w", err)
	}
	metrics, err := webhook.NewMetrics(reg)
	if err != nil {
		return err
	}

	restCfg, err := o.restConfig()
	if err != nil {
		return err
	}
	var client kubernetes.Interface
	if restCfg != nil {
		if client, err = kubernetes.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)

	native, err := o.nativePolicy(ctx, client, log)
	if err != nil {
		return err
	}
	handler, err := webhook.NewHandler(webhook.Options{Engines: engines, Native: native, Metrics: metrics, MaxPodBytes: o.MaxPodBytes})
	if err != nil {
		return err
	}

	tlsOpts := []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = tls12Suites
		if !o.EnableHTTP2 {
			c.NextProtos = []string{"http/1.1"}
		}
	}}
	caReady := func() bool { return true }
	var certs *selfManaged
	switch o.TLSMode {
	case TLSModeCertDir:
		cw, err := newCertDirWatcher(o.CertDir, reg, log.WithName("tls"))
		if err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = cw.GetCertificate })
		g.Go(func() error { return cw.Start(ctx) })
	case TLSModeSelfManaged:
		if client == nil {
			return errors.New("--tls-mode=self-managed needs cluster access (--kubeconfig, or running in a pod)")
		}
		certs, err = newSelfManaged(client, o.SelfManaged, reg, log.WithName("tls"))
		if err != nil {
			return err
		}
		if err := certs.ensure(ctx); err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = certs.getCertificate })
		caReady = certs.caBundleWritten
		g.Go(func() error { return certs.run(ctx) })
	default:
		return fmt.Errorf("--tls-mode %q: want %s or %s", o.TLSMode, TLSModeCertDir, TLSModeSelfManaged)
	}

	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.Host, Port: o.Port, TLSOpts: tlsOpts})
	drain := &drainer{delay: o.DrainDelay}
	reviews := drain.wrap(webhook.NewHTTPHandler(webhook.NewWebhook(handler), webhook.HTTPOptions{}))
	srv.Register("/inject", reviews)
	srv.Register("/inject/", reviews)

	var readyOnce atomic.Bool
	ready := func() error {
		if err := drain.check(); err != nil {
			return err
		}
		if err := srv.StartedChecker()(nil); err != nil {
			return fmt.Errorf("webhook not serving TLS yet: %w", err)
		}
		if !caReady() {
			return errors.New("caBundle not written yet")
		}
		return engines.Check()
	}
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
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	lis, err := net.Listen("tcp", o.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.HealthAddr, err)
	}
	side := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

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
	if o.Ready != nil {
		g.Go(func() error {
			for ctx.Err() == nil && ready() != nil {
				time.Sleep(20 * time.Millisecond)
			}
			if ctx.Err() == nil && readyOnce.CompareAndSwap(false, true) {
				o.Ready(net.JoinHostPort(o.Host, fmt.Sprint(o.Port)), lis.Addr().String())
			}
			return nil
		})
	}
	log.Info("serving", "port", o.Port, "healthAddr", lis.Addr().String(), "tlsMode", o.TLSMode, "revision", o.Revision)
	return g.Wait()
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

func (o *Options) nativePolicy(ctx context.Context, client kubernetes.Interface, log logr.Logger) (webhook.NativeSidecarPolicy, error) {
	switch o.NativeSidecars {
	case "true":
		return webhook.Always(true), nil
	case "false":
		return webhook.Always(false), nil
	case "auto":
		if client == nil {
			log.Info("no cluster access: native sidecars on")
			return webhook.Always(true), nil
		}
		nv, err := webhook.NewNodeVersions(ctx, client)
		if err != nil {
			return nil, err
		}
		return nv, nil
	}
	return nil, fmt.Errorf("--native-sidecars %q: want auto, true or false", o.NativeSidecars)
}
