// Command istioinjector serves Istio's own sidecar injector webhook
// (istio.io/istio/pkg/kube/inject, the code istiod runs) on its own, for
// meshinject's load benchmark: the injection config, values and mesh
// config are the files chartrender writes from Istio's chart, TLS comes
// from a certificate directory, native sidecars are on
// (ENABLE_NATIVE_SIDECARS=true in the environment, as istiod reads it) and
// Istio logs at error level, as Istio's own benchmarks run it. /metrics on
// -metrics-port serves the Go runtime's metrics.
//
//	istioinjector -port N -cert-dir DIR -config-dir DIR [-metrics-port N] [-gc-percent N]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
	"istio.io/istio/pkg/log"
)

func main() {
	port := flag.Int("port", 0, "HTTPS port of /inject")
	metricsPort := flag.Int("metrics-port", 0, "plain-HTTP port of /metrics (0: off)")
	certDir := flag.String("cert-dir", "", "directory with tls.crt and tls.key")
	configDir := flag.String("config-dir", "", "directory with chartrender's config, values and mesh")
	gcPercent := flag.Int("gc-percent", 100, "garbage-collector target percentage")
	flag.Parse()
	if err := run(*port, *metricsPort, *certDir, *configDir, *gcPercent); err != nil {
		fmt.Fprintln(os.Stderr, "istioinjector:", err)
		os.Exit(1)
	}
}

func run(port, metricsPort int, certDir, configDir string, gcPercent int) error {
	if port == 0 || certDir == "" || configDir == "" {
		return errors.New("-port, -cert-dir and -config-dir are required")
	}
	debug.SetGCPercent(gcPercent)
	for _, s := range log.Scopes() {
		s.SetOutputLevel(log.ErrorLevel)
	}
	meshYAML, err := os.ReadFile(filepath.Join(configDir, "mesh"))
	if err != nil {
		return err
	}
	m, err := mesh.ApplyMeshConfigDefaults(string(meshYAML))
	if err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	env := model.NewEnvironment()
	env.Watcher = meshwatcher.NewTestWatcher(m)
	push := model.NewPushContext()
	push.ProxyConfigs = model.GetProxyConfigs(model.NewFakeStore(), m)
	env.SetPushContext(push)

	watcher, err := inject.NewFileWatcher(filepath.Join(configDir, "config"), filepath.Join(configDir, "values"))
	if err != nil {
		return fmt.Errorf("injection config: %w", err)
	}
	mux := http.NewServeMux()
	if _, err := inject.NewWebhook(inject.WebhookParameters{
		Watcher: watcher, Env: env, Mux: mux, MultiCluster: multicluster.NewFakeController(),
	}); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if metricsPort != 0 {
		go func() {
			srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(metricsPort), Handler: promhttp.Handler(), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintln(os.Stderr, "istioinjector: metrics:", srv.ListenAndServe())
		}()
	}
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
}
