package reload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/test/testutil"
)

// swap writes files as the kubelet does for a ConfigMap: a new timestamped
// directory, then an atomic rename of the ..data symlink.
func swap(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	ts := filepath.Join(dir, "..ts-"+time.Now().Format("150405.000000000"))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(ts, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, n)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", n), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func proxyImage(t *testing.T, e *inject.Engine) string {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "a"}}}}
	res, err := e.Inject(inject.Request{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Pod.Spec.Containers {
		if c.Name == "istio-proxy" {
			return c.Image
		}
	}
	t.Fatal("no istio-proxy")
	return ""
}

func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	swap(t, dir, map[string]string{fileValues: "global:\n  tag: 1.28.0\n"})
	reg := prometheus.NewRegistry()
	r, err := New(Options{Dir: dir, Debounce: 50 * time.Millisecond, Registerer: reg, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(t.Context())
	}()
	t.Cleanup(func() { <-done })       // t.Context is cancelled before cleanups run
	time.Sleep(100 * time.Millisecond) // let the watch start

	before := r.Engine()
	if got := proxyImage(t, before); got != "docker.io/istio/proxyv2:1.28.0" {
		t.Fatalf("initial image %s", got)
	}

	// A valid change is applied without a restart.
	swap(t, dir, map[string]string{fileValues: "global:\n  tag: 1.28.5\n"})
	testutil.Eventually(t, 10*time.Second, func() bool { return proxyImage(t, r.Engine()) == "docker.io/istio/proxyv2:1.28.5" })
	if got := promtestutil.ToFloat64(r.reloads.WithLabelValues("success")); got < 1 {
		t.Errorf("success reloads = %v", got)
	}
	// A review that started on the old engine finishes on it.
	if got := proxyImage(t, before); got != "docker.io/istio/proxyv2:1.28.0" {
		t.Errorf("in-flight engine changed: %s", got)
	}

	// An invalid change is refused; the last good config keeps serving.
	good := r.Engine()
	swap(t, dir, map[string]string{fileValues: "global:\n  tag: 1.28.9\n  proxy:\n    statusPort: many\n"})
	testutil.Eventually(t, 10*time.Second, func() bool { return promtestutil.ToFloat64(r.reloads.WithLabelValues("failure")) >= 1 })
	if r.Engine() != good || proxyImage(t, r.Engine()) != "docker.io/istio/proxyv2:1.28.5" {
		t.Error("an invalid config replaced the last good one")
	}

	// A template that parses but cannot render is refused too.
	swap(t, dir, map[string]string{fileConfig: "templates:\n  sidecar: '{{ .Nope.Deeper }}'\n"})
	testutil.Eventually(t, 10*time.Second, func() bool { return promtestutil.ToFloat64(r.reloads.WithLabelValues("failure")) >= 2 })
	if r.Engine() != good {
		t.Error("a config whose template fails to render replaced the last good one")
	}
}

func TestNewRefusesInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fileMesh), []byte("defaultConfig: {statusPort: 99999}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "statusPort") {
		t.Errorf("err = %v, want the mesh statusPort error", err)
	}
}

func TestValidateRendersEveryTemplate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fileConfig), []byte("templates:\n  extra: |\n    spec:\n      containers:\n      - name: x\n        imagee: typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "template extra") || !strings.Contains(err.Error(), "imagee") {
		t.Errorf("err = %v, want template extra refused for field imagee", err)
	}
}

// TestConfigWarnings loads values with a key injection does not read: it
// loads, meshinject_config_warnings counts it and the log names it; with
// StrictValues the same directory is refused, naming the key.
func TestConfigWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	swap(t, dir, map[string]string{fileValues: "global:\n  proxy:\n    tracerr: datadog\n"})
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	r, err := New(Options{Dir: dir, Registerer: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if got := promtestutil.ToFloat64(r.warnings); got != 1 {
		t.Errorf("meshinject_config_warnings = %v, want 1", got)
	}
	if !strings.Contains(strings.Join(logged, "\n"), "global.proxy.tracerr") {
		t.Errorf("log %q does not name global.proxy.tracerr", logged)
	}
	_, err = New(Options{Dir: dir, StrictValues: true})
	if err == nil || !strings.Contains(err.Error(), "global.proxy.tracerr") {
		t.Errorf("strict: err %v, want a refusal naming global.proxy.tracerr", err)
	}
}
