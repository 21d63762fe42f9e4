//go:build node

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// startRuns is how many pods of each kind testMeshStartTime starts, one
// after another.
const startRuns = 5

// testMeshStartTime measures create → Ready of a netcheck pod not
// injected, injected with a native sidecar and injected classic, on the
// same node in the same run, and logs the table; every pod must turn
// Ready.
func testMeshStartTime(t *testing.T) {
	kinds := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
	}{
		{"not injected", nil, nil},
		{"native sidecar", map[string]string{"istio-injection": "enabled"}, nil},
		{"classic sidecar", map[string]string{"istio-injection": "enabled"}, map[string]string{"sidecar.istio.io/nativeSidecar": "false"}},
	}
	rows := []string{fmt.Sprintf("%-16s %8s %8s %8s", "pod", "min", "median", "max")}
	for _, k := range kinds {
		ns := namespace(t, "mesh-start", k.labels)
		var took []time.Duration
		for i := range startRuns {
			p := appNetcheck(fmt.Sprintf("start-%d", i))
			p.Annotations = k.annotations
			p.Spec.Containers[0].ReadinessProbe = netcheckReadiness()
			d, err := startPod(t.Context(), ns, p, 2*wait)
			if err != nil {
				t.Fatalf("%s: %v", k.name, err)
			}
			took = append(took, d)
		}
		slices.Sort(took)
		rows = append(rows, fmt.Sprintf("%-16s %8s %8s %8s", k.name, took[0].Round(10*time.Millisecond),
			took[len(took)/2].Round(10*time.Millisecond), took[len(took)-1].Round(10*time.Millisecond)))
	}
	t.Logf("create → Ready, %d pods each, one at a time:\n%s", startRuns, strings.Join(rows, "\n"))
}

// netcheckReadiness is the app's readiness probe: every second on /healthz.
func netcheckReadiness() *corev1.Probe {
	p := &corev1.Probe{PeriodSeconds: 1}
	p.HTTPGet = &corev1.HTTPGetAction{Path: "/healthz"}
	p.HTTPGet.Port.IntVal = 8080
	return p
}

// startPod creates the pod and returns how long it took to turn Ready,
// polled every 50ms, or an error after timeout.
func startPod(ctx context.Context, ns string, p *corev1.Pod, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if _, err := suite.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("create %s: %w", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := podReady(ctx, ns, p.Name)
		if err == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("pod %s not Ready after %s: %w", p.Name, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Churn: churnPods injected pods, created at churnRate per second with at
// most churnInFlight alive, each deleted once Ready.
const (
	churnPods     = 200
	churnRate     = 2
	churnInFlight = 4
)

// testMeshChurn creates and deletes churnPods injected pods at a bounded
// rate; none may fail to turn Ready.
func testMeshChurn(t *testing.T) {
	ns := namespace(t, "mesh-churn", map[string]string{"istio-injection": "enabled"})
	var (
		mu     sync.Mutex
		took   []time.Duration
		failed []string
		wg     sync.WaitGroup
	)
	slots := make(chan struct{}, churnInFlight)
	tick := time.NewTicker(time.Second / churnRate)
	defer tick.Stop()
	start := time.Now()
	for i := range churnPods {
		<-tick.C
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			p := appNetcheck(fmt.Sprintf("churn-%d", i))
			p.Spec.Containers[0].ReadinessProbe = netcheckReadiness()
			d, err := startPod(t.Context(), ns, p, 2*wait)
			_ = suite.client.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](5)})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			took = append(took, d)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	eventually(t, 3*wait, "the churned pods gone", func() error {
		pods, err := suite.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	slices.Sort(took)
	if len(failed) > 0 {
		t.Errorf("%d of %d pods failed to start: %s", len(failed), churnPods, strings.Join(failed, "; "))
	}
	if len(took) > 0 {
		t.Logf("churn: %d injected pods created at %d/s (at most %d alive) in %s, %d Ready, %d failed; create → Ready median %s, p95 %s, max %s; all deleted %s after the first create",
			churnPods, churnRate, churnInFlight, elapsed.Round(time.Second), len(took), len(failed),
			took[len(took)/2].Round(10*time.Millisecond), took[len(took)*95/100].Round(10*time.Millisecond), took[len(took)-1].Round(10*time.Millisecond),
			time.Since(start).Round(time.Second))
	}
}
