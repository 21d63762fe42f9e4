//go:build node

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// previousChartCommit is the last landed commit before the chart gained
// image.digest and image.pullPolicy: the HA scenario installs the chart as
// it was there and upgrades to today's.
const previousChartCommit = "75100a2"

// createRate is the pod creations per second of the HA scenario's loop.
const createRate = 5

// faultTimeout bounds each fault's recovery.
const faultTimeout = 3 * time.Minute

// loadResult counts one creation loop's pods.
type loadResult struct {
	created, failed, uninjected int
	errs                        []string
}

// creationLoop creates pending pods in ns at createRate per second, each
// in its own goroutine (at most 32 in flight), until stop is called.
type creationLoop struct {
	stopc chan struct{}
	done  chan struct{}
	start time.Time
	mu    sync.Mutex
	res   loadResult
}

func startCreationLoop(ctx context.Context, ns, prefix string) *creationLoop {
	l := &creationLoop{stopc: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		inflight := make(chan struct{}, 32)
		tick := time.NewTicker(time.Second / createRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stopc:
				wg.Wait()
				return
			case <-tick.C:
			}
			select {
			case inflight <- struct{}{}:
			default:
				l.record(nil, fmt.Errorf("more than 32 creations in flight"))
				continue
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-inflight }()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				pod, err := suite.client.CoreV1().Pods(ns).Create(cctx, pendingPod(fmt.Sprintf("%s-%d", prefix, i)), metav1.CreateOptions{})
				l.record(pod, err)
			}(i)
		}
	}()
	return l
}

func (l *creationLoop) record(pod *corev1.Pod, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.res.failed++
		if len(l.res.errs) < 5 {
			l.res.errs = append(l.res.errs, fmt.Sprintf("%s into the loop: %v", time.Since(l.start).Round(100*time.Millisecond), err))
		}
	case find(pod.Spec.InitContainers, "istio-proxy") == nil && find(pod.Spec.Containers, "istio-proxy") == nil:
		l.res.created++
		l.res.uninjected++
	default:
		l.res.created++
	}
}

func (l *creationLoop) stop() loadResult {
	close(l.stopc)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

// fault is one disruption of the injector and how to tell it is over.
// before is the injector's pods when it starts; newPods how many of the
// replicas must be new pods (Ready, and no pod left terminating) for the
// injector to be whole again; recovered, when set, must hold too.
type fault struct {
	name      string
	do        func(t *testing.T, before []string)
	newPods   int
	recovered func(ctx context.Context) error
}

// TestNodeHA keeps creating pods (createRate per second, through the API
// server, failurePolicy Fail) in a namespace served by the chart's two
// replicas while the injector is disrupted: the chart of the previous
// release upgraded to today's, one pod deleted, every replica deleted in
// turn, a rolling update by helm upgrade, and the serving certificate
// renewed. No creation may fail and every pod must be injected; the time
// until the injector is whole again is reported per fault.
func TestNodeHA(t *testing.T) {
	needsNode(t)
	const rev, release, ns = "ha", "meshinject-ha", "meshinject"
	name := "meshinject-" + rev
	old := previousChart(t)
	digest := imageDigest(t)
	helm(t, "install", release, old, "-n", ns, "--create-namespace", "--set", "revision="+rev, "--set", "tls.mode=self-managed")
	t.Cleanup(func() { uninstall(t, release, name) })
	rollout(t, ns, name)
	mwc, err := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "meshinject-sidecar-injector-"+rev, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if w.FailurePolicy == nil || *w.FailurePolicy != "Fail" {
			t.Fatalf("webhook %s: failurePolicy %v, want Fail", w.Name, w.FailurePolicy)
		}
	}
	served := namespace(t, "served", map[string]string{"istio.io/rev": rev})
	chart := filepath.Join(suite.repo, "deploy/charts/meshinject")
	faults := []fault{
		{"helm upgrade from the chart at " + previousChartCommit, func(t *testing.T, _ []string) {
			helm(t, "upgrade", release, chart, "-n", ns, "--reuse-values", "--set", "image.digest="+digest)
		}, 2, rolledOut(ns, name)},
		{"delete one injector pod", func(t *testing.T, before []string) {
			mustKubectl(t, "-n", ns, "delete", "pod", before[0], "--wait=false")
		}, 1, nil},
		{"delete every injector pod in turn", func(t *testing.T, before []string) {
			for i, pod := range before {
				mustKubectl(t, "-n", ns, "delete", "pod", pod, "--wait=false")
				eventually(t, faultTimeout, pod+" replaced", func() error {
					_, err := replaced(t.Context(), ns, name, before, i+1)
					return err
				})
			}
		}, 2, nil},
		{"helm upgrade with a changed value (rolling update)", func(t *testing.T, _ []string) {
			helm(t, "upgrade", release, chart, "-n", ns, "--reuse-values", "--set", "logLevel=debug")
		}, 2, rolledOut(ns, name)},
		{"renew the serving certificate", func(t *testing.T, _ []string) { dropServingCert(t, ns, name+"-tls") }, 0, servingRenewed(ns, name)},
	}
	quiet(t)
	webhookServes(t, served)
	var rows []string
	for i, f := range faults {
		loop := startCreationLoop(t.Context(), served, fmt.Sprintf("f%d", i))
		time.Sleep(2 * time.Second)
		before := podNames(t, ns, name)
		start := time.Now()
		f.do(t, before)
		var newReady time.Duration
		eventually(t, faultTimeout, f.name+": recovered", func() error {
			ready, err := replaced(t.Context(), ns, name, before, f.newPods)
			if ready && newReady == 0 {
				newReady = time.Since(start)
			}
			if err != nil {
				return err
			}
			if f.recovered != nil {
				return f.recovered(t.Context())
			}
			return nil
		})
		recovery := time.Since(start)
		time.Sleep(2 * time.Second)
		res := loop.stop()
		readyCol := "no new replica"
		if f.newPods > 0 {
			readyCol = newReady.Round(100 * time.Millisecond).String()
		}
		rows = append(rows, fmt.Sprintf("| %s | %d | %d | %d | %s | %s |", f.name, res.created+res.failed, res.failed, res.uninjected,
			readyCol, recovery.Round(100*time.Millisecond)))
		t.Log(rows[len(rows)-1])
		if res.failed > 0 || res.uninjected > 0 {
			t.Errorf("%s: %d creations failed, %d pods not injected: %v", f.name, res.failed, res.uninjected, res.errs)
			ev, _ := kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", "-o", "custom-columns=TIME:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message")
			t.Logf("events of %s:\n%s", ns, ev)
		}
	}
	assertInjectorPods(t, ns, "app="+name, "ghcr.io/meshinject/meshinject@"+digest)
	t.Logf("HA under %d pod creations/s:\n| fault | creations | failed | not injected | new replicas Ready after | no old pod left after |\n|---|---|---|---|---|---|\n%s",
		createRate, strings.Join(rows, "\n"))
}

// previousChart extracts the chart at previousChartCommit from the
// repository's history.
func previousChart(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	archive := exec.CommandContext(ctx, "git", "-C", suite.repo, "archive", previousChartCommit, "deploy/charts/meshinject")
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s (the clone needs that commit): %v\n%s", previousChartCommit, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "deploy/charts/meshinject")
}

// imageDigest is the digest `make image` wrote for the image's index.
func imageDigest(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeTier.images, "meshinject.digest"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// rolledOut is nil once the Deployment's every replica is updated and
// available and no old pod is left.
func rolledOut(ns, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		d, err := suite.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want || s.ReadyReplicas != want {
			return fmt.Errorf("deployment %s: %d replicas, %d updated, %d ready, %d available; want %d", name, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, want)
		}
		pods, err := suite.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		if len(pods.Items) != int(want) {
			return fmt.Errorf("%d pods of %s, want %d", len(pods.Items), name, want)
		}
		return nil
	}
}

// podNames lists the injector's pods, oldest first.
func podNames(t *testing.T, ns, name string) []string {
	t.Helper()
	pods, err := suite.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

// replaced is nil once the injector has its replicas Ready, no pod
// terminating, and at least n of them not among before; ready says whether
// the replicas are Ready with n new ones, terminating pods aside.
func replaced(ctx context.Context, ns, name string, before []string, n int) (ready bool, err error) {
	d, err := suite.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	pods, err := suite.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		return false, err
	}
	want := int(*d.Spec.Replicas)
	live, fresh, terminating := 0, 0, 0
	for _, p := range pods.Items {
		switch {
		case p.DeletionTimestamp != nil:
			terminating++
		case podReady(ctx, ns, p.Name) == nil:
			live++
			if !slices.Contains(before, p.Name) {
				fresh++
			}
		}
	}
	ready = live == want && fresh >= n
	if !ready || terminating > 0 || len(pods.Items) != want {
		return ready, fmt.Errorf("%d pods, %d Ready (%d new), %d terminating; want %d Ready, %d new, none terminating", len(pods.Items), live, fresh, terminating, want, n)
	}
	return true, nil
}

// webhookServes waits until a pod created in ns (a server-side dry run) is
// injected: the API server reaches the webhook through its Service, whose
// endpoints kube-proxy programs a moment after the pods turn Ready. Until
// then a call gets kube-proxy's "connection refused" for a Service without
// endpoints, and with failurePolicy Fail the creation fails.
func webhookServes(t *testing.T, ns string) {
	t.Helper()
	eventually(t, wait, "the webhook reachable through its Service", func() error {
		pod, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), pendingPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if find(pod.Spec.InitContainers, "istio-proxy") == nil && find(pod.Spec.Containers, "istio-proxy") == nil {
			return fmt.Errorf("pod not injected")
		}
		return nil
	})
}

// quiet waits until no namespace is terminating, so that the faults are
// not measured against the previous scenarios' teardown.
func quiet(t *testing.T) {
	t.Helper()
	eventually(t, 3*wait, "no namespace terminating", func() error {
		list, err := suite.client.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list.Items {
			if n.Status.Phase == corev1.NamespaceTerminating {
				return fmt.Errorf("namespace %s terminating", n.Name)
			}
		}
		return nil
	})
}

// dropServingCert spoils the serving certificate in the self-managed TLS
// Secret (a Secret of type kubernetes.io/tls keeps the key); the replicas
// reissue it under the same CA at their next check, and keep serving the
// old one until then.
func dropServingCert(t *testing.T, ns, secret string) {
	t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/data/tls.crt","value":%q}]`, base64.StdEncoding.EncodeToString([]byte("not a certificate")))
	if _, err := suite.client.CoreV1().Secrets(ns).Patch(t.Context(), secret, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// servingRenewed is nil once the Secret holds a certificate again and
// every replica serves it.
func servingRenewed(ns, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		sec, err := suite.client.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
		if err != nil {
			return err
		}
		want, err := pemSerial(sec.Data[corev1.TLSCertKey])
		if err != nil {
			return fmt.Errorf("secret %s-tls: %w", name, err)
		}
		pods, err := suite.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			got, err := servedSerial(ctx, p.Status.PodIP+":9443")
			if err != nil {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
			if got != want {
				return fmt.Errorf("pod %s serves serial %s, the Secret holds %s", p.Name, got, want)
			}
		}
		return nil
	}
}
