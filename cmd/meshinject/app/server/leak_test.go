package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/meshinject/meshinject/test/testutil"
)

// unreachableKubeconfig writes a kubeconfig for an API server nobody
// serves, so an informer on it keeps retrying.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunLeavesNoGoroutine: Run leaves no goroutine behind, whether it
// fails before serving (bad options, a port in use, with the node policy
// and the certificate watcher set up) or serves and is stopped. Not
// parallel: goleak sees every goroutine of the process.
func TestRunLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := servingDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	kubeconfig := unreachableKubeconfig(t)
	for name, tc := range map[string]struct {
		o    Options
		want string // in the error
	}{
		"tls mode":               {Options{TLSMode: "magic"}, "--tls-mode"},
		"native":                 {Options{NativeSidecars: "sometimes"}, "--native-sidecars"},
		"self-managed no client": {Options{TLSMode: tLSModeSelfManaged}, "needs cluster access"},
		"secure metrics offline": {Options{MetricsSecure: true}, "--metrics-secure needs cluster access"},
		"missing certdir":        {Options{CertDir: filepath.Join(dir, "nope")}, "--cert-dir"},
		"health port in use":     {Options{HealthAddr: busy.Addr().String(), Kubeconfig: kubeconfig}, "move it with --health-addr"},
		"metrics port in use":    {Options{MetricsAddr: busy.Addr().String(), Kubeconfig: kubeconfig}, "move it with --metrics-addr"},
		"pprof port in use":      {Options{PprofAddr: busy.Addr().String()}, "move it with --pprof-addr"},
		"webhook port in use":    {Options{Port: busy.Addr().(*net.TCPAddr).Port, Kubeconfig: kubeconfig}, "move it with --port"},
	} {
		o := tc.o
		if o.Port == 0 {
			o.Port = testutil.FreePort(t)
		}
		freeAddrs(t, &o)
		if o.CertDir == "" {
			o.CertDir = dir
		}
		o.Host, o.DrainDelay = "127.0.0.1", -1
		if err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run returned %v, want an error saying %q", name, err, tc.want)
		}
	}

	// Serving, then stopped.
	ctx, cancel := context.WithCancel(t.Context())
	o := Options{Host: "127.0.0.1", Port: testutil.FreePort(t), CertDir: dir, DrainDelay: -1}
	freeAddrs(t, &o)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	waitReadyz(t, "http://"+o.HealthAddr, done)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancel")
	}
}

// TestAbortWatcher: the certificate watcher set up for a Run that returns
// before starting is closed, not left watching.
func TestAbortWatcher(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := servingDir(t)
	cw, err := newCertDirWatcher(dir, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	abortWatcher(t.Context(), cw)
}
