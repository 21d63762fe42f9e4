package reload

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshinject/meshinject/test/testutil"
)

// tagValues is a values file whose proxy image has the tag.
func tagValues(tag string) string { return "global:\n  tag: " + tag + "\n" }

// load injects pods through r's current engine until stopped and counts
// the proxy images served: the admissions a webhook would have made.
type load struct {
	mu     sync.Mutex
	images map[string]int
	stop   context.CancelFunc
	done   sync.WaitGroup
}

func startLoad(t *testing.T, r *reloader) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	l := &load{images: map[string]int{}, stop: cancel}
	for range 2 {
		l.done.Go(func() {
			for ctx.Err() == nil {
				img := proxyImage(t, r.Engine())
				l.mu.Lock()
				l.images[img]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

// check stops the load and fails for any image not of a valid config.
func (l *load) check(t *testing.T, valid ...string) {
	t.Helper()
	l.stop()
	l.done.Wait()
	ok := map[string]bool{}
	for _, tag := range valid {
		ok["docker.io/istio/proxyv2:"+tag] = true
	}
	total := 0
	for img, n := range l.images {
		total += n
		if !ok[img] {
			t.Errorf("%d admissions served %s, from a config that was never valid", n, img)
		}
	}
	t.Logf("%d admissions under load: %v", total, l.images)
}

// runReloader starts r.Run until the test ends.
func runReloader(t *testing.T, r *reloader) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(t.Context())
	}()
	t.Cleanup(func() { <-done })
}

func newFaultReloader(t *testing.T, dir string, resync time.Duration) (*reloader, func(string) float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(Options{Dir: dir, Debounce: 200 * time.Millisecond, Resync: resync, Registerer: reg, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	runReloader(t, r)
	time.Sleep(100 * time.Millisecond) // let the watch start
	return r, func(result string) float64 { return promtestutil.ToFloat64(r.reloads.WithLabelValues(result)) }
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitTag(t *testing.T, r *reloader, tag string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool { return proxyImage(t, r.Engine()) == "docker.io/istio/proxyv2:"+tag })
}

// TestReloadPlainFileFaults: faults on plain files under load. A writer
// caught halfway is not a failure; a missing or empty file is one failure,
// counted once, with the last good config serving; a deleted and recreated
// directory is watched again, and readiness fails while it is gone. No
// admission is ever served from the defaults.
func TestReloadPlainFileFaults(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "config")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, fileValues)
	writeFile(t, values, tagValues("1.28.0"))
	writeFile(t, filepath.Join(dir, fileMesh), "defaultConfig:\n  concurrency: 2\n")
	r, count := newFaultReloader(t, dir, 300*time.Millisecond)
	l := startLoad(t, r)

	// Truncate, then write a little after one debounce: read empty once,
	// read again, reloaded; no failure.
	f, err := os.OpenFile(values, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := f.WriteString(tagValues("1.28.1")); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	waitTag(t, r, "1.28.1")
	if n := count("failure"); n != 0 {
		t.Errorf("a truncate-then-write counted %v failures, want 0", n)
	}

	// A deleted file: one failure, last good config, stale.
	if err := os.Remove(values); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return count("failure") == 1 })
	time.Sleep(time.Second) // resyncs must not count it again
	if n := count("failure"); n != 1 {
		t.Errorf("a missing file counted %v failures, want 1", n)
	}
	if got := promtestutil.ToFloat64(r.stale); got != 1 {
		t.Errorf("stale = %v with a refused change, want 1", got)
	}
	writeFile(t, values, tagValues("1.28.2"))
	waitTag(t, r, "1.28.2")

	// An empty file stays: one failure.
	writeFile(t, values, "")
	testutil.Eventually(t, 10*time.Second, func() bool { return count("failure") == 2 })
	writeFile(t, values, tagValues("1.28.3"))
	waitTag(t, r, "1.28.3")
	if got := promtestutil.ToFloat64(r.stale); got != 0 {
		t.Errorf("stale = %v after a good change, want 0", got)
	}
	// meshinject_config_info names the configuration in force, only it.
	hash := r.Engine().Config().Hash
	if n := promtestutil.CollectAndCount(r.info); n != 1 || promtestutil.ToFloat64(r.info.WithLabelValues(hash)) != 1 {
		t.Errorf("meshinject_config_info: %d series, {hash=%s} = %v; want that one series at 1", n, hash, promtestutil.ToFloat64(r.info.WithLabelValues(hash)))
	}

	// The directory deleted: not ready; recreated: watched again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return r.Check() != nil })
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, fileMesh), "defaultConfig:\n  concurrency: 2\n")
	writeFile(t, values, tagValues("1.28.4"))
	waitTag(t, r, "1.28.4")
	if err := r.Check(); err != nil {
		t.Errorf("Check after the directory came back: %v", err)
	}
	writeFile(t, values, tagValues("1.28.5"))
	waitTag(t, r, "1.28.5")

	l.check(t, "1.28.0", "1.28.1", "1.28.2", "1.28.3", "1.28.4", "1.28.5")
	if n := count("failure"); n != 2 {
		t.Errorf("failures = %v, want 2 (the missing and the empty file)", n)
	}
}

// TestReloadKubeletFaults: the kubelet's layout under load. Swaps of the
// ..data symlink and writes through a file's symlink are seen without a
// resync; a swap that drops a key is refused; valid swaps count no failure.
func TestReloadKubeletFaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := func(tag string) map[string]string {
		return map[string]string{fileValues: tagValues(tag), fileMesh: "defaultConfig:\n  concurrency: 2\n"}
	}
	swap(t, dir, files("1.29.0"))
	r, count := newFaultReloader(t, dir, time.Hour) // events only
	l := startLoad(t, r)

	for _, tag := range []string{"1.29.1", "1.29.2", "1.29.3"} {
		swap(t, dir, files(tag))
		waitTag(t, r, tag)
	}
	writeFile(t, filepath.Join(dir, fileValues), tagValues("1.29.4")) // through ..data
	waitTag(t, r, "1.29.4")
	swap(t, dir, files("1.29.5"))
	waitTag(t, r, "1.29.5")
	writeFile(t, filepath.Join(dir, fileValues), tagValues("1.29.6")) // the new target
	waitTag(t, r, "1.29.6")
	if n := count("failure"); n != 0 {
		t.Errorf("valid swaps counted %v failures", n)
	}

	// A ConfigMap update that drops the values key is refused.
	swap(t, dir, map[string]string{fileMesh: "defaultConfig:\n  concurrency: 2\n"})
	testutil.Eventually(t, 10*time.Second, func() bool { return count("failure") == 1 })
	l.check(t, "1.29.0", "1.29.1", "1.29.2", "1.29.3", "1.29.4", "1.29.5", "1.29.6")
}

// TestReloadUnreadableFile: a file that cannot be read (here a directory
// where values was) is one failure, counted once however long it stays,
// and the last good config serves on.
func TestReloadUnreadableFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	values := filepath.Join(dir, fileValues)
	writeFile(t, values, tagValues("1.27.0"))
	r, count := newFaultReloader(t, dir, 100*time.Millisecond)
	if err := os.Remove(values); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(values, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return count("failure") == 1 })
	time.Sleep(time.Second) // resyncs must not count it again
	if n := count("failure"); n != 1 {
		t.Errorf("an unreadable file counted %v failures, want 1", n)
	}
	if got := proxyImage(t, r.Engine()); got != "docker.io/istio/proxyv2:1.27.0" {
		t.Errorf("serving %s, want the last good config's image", got)
	}
}
