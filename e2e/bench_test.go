//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/test/testutil"
)

// benchWay is one way pods are created: without a webhook, through
// meshinject's (deploy/'s configuration, the suite's meshinject serve), or
// through Istio's injector.
type benchWay struct {
	name     string
	labels   map[string]string // of the namespace, selecting the webhook
	webhooks string            // prefix of the webhook entries' names in the API server's metrics
	// injected is the pod to create, already injected, when the way
	// measures the cost of storing injected pods without a webhook.
	injected *corev1.Pod
}

// benchFigures are what one way measured.
type benchFigures struct {
	deployment, direct time.Duration // until all pods existed
	p50, p99           time.Duration // client-side, direct creates
	apiP50, apiP99     float64       // the API server's admission_duration of the webhook, seconds
	injected           int
}

const (
	benchDeploymentPods = 250
	benchDirectPods     = 250
	benchConcurrency    = 16
)

// TestBenchPodCreation (make bench-e2e; skipped otherwise) creates 500 pods
// three ways on the suite's control plane: a Deployment scaled to 250
// through kube-controller-manager, then 250 direct creates at concurrency
// 16; without a webhook, through meshinject's webhook and through Istio's
// injector (pkg/kube/inject as istiod serves it, e2e/tools/istio's
// istioinjector, with the configuration of Istio's chart). It prints the
// times until every pod existed, the client's p50 and p99 create latency
// and the API server's own apiserver_admission_webhook_admission_duration_seconds
// for the webhook (interpolated within its buckets), and their ratios to no
// webhook. A fourth way creates the pods meshinject wrote as they are,
// without a webhook: the ratios to it are what the webhook call itself
// costs, apart from storing bigger pods.
func TestBenchPodCreation(t *testing.T) {
	if os.Getenv("E2E_BENCH") == "" {
		t.Skip("a benchmark: make bench-e2e runs it (E2E_BENCH=1)")
	}
	needsLocal(t)
	benchMeshinject(t)
	startIstioInjector(t)
	ways := []benchWay{
		{name: "no webhook"},
		{name: "meshinject", labels: map[string]string{"istio-injection": "enabled"}, webhooks: "namespace.meshinject.istio.io"},
		{name: "istio", labels: map[string]string{"bench-istio": "enabled"}, webhooks: "bench.sidecar-injector.istio.io"},
	}
	figures := make([]benchFigures, 0, len(ways)+1)
	for _, w := range ways {
		figures = append(figures, benchWayRun(t, w))
	}
	// The pods meshinject wrote, created as they are without a webhook: what
	// storing injected pods costs the API server and etcd, apart from the
	// webhook call.
	pre := benchWay{name: "injected pods, no webhook", injected: injectedTemplate(t)}
	ways = append(ways, pre)
	figures = append(figures, benchWayRun(t, pre))
	printBench(ways, figures)
}

// benchMeshinject replaces the suite's default server (debug logs) with
// one as deploy/ runs it, logging at info level, until the test ends.
func benchMeshinject(t *testing.T) {
	t.Helper()
	suite.def.stop()
	s := &server{port: defaultPort, healthPort: defaultPort - 1000, certDir: suite.def.certDir, configDir: suite.def.configDir}
	t.Cleanup(func() {
		s.stop()
		if err := suite.def.restart(); err != nil {
			t.Error(err)
		}
	})
	if err := s.start("bench", []string{"serve", "--host=127.0.0.1", "--port=" + strconv.Itoa(defaultPort),
		"--health-addr=127.0.0.1:" + strconv.Itoa(s.healthPort), "--metrics-addr=127.0.0.1:" + strconv.Itoa(s.port-2000),
		"--cert-dir=" + s.certDir, "--config-dir=" + s.configDir, "--kubeconfig=" + suite.kubeconfig, "--memory-limit=256Mi", "--enable-http2"}); err != nil {
		t.Fatal(err)
	}
}

// startIstioInjector serves Istio's injector on a local port with a
// certificate of the suite's CA, behind a webhook configuration for
// namespaces labelled bench-istio=enabled.
func startIstioInjector(t *testing.T) {
	t.Helper()
	port := testutil.FreePort(t)
	dir := filepath.Join(suite.work, "istioinjector")
	serving, err := certs.NewServing(suite.ca, certs.Options{IPAddresses: localIPs})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteDir(dir, serving, suite.ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	p, err := startProcessEnv("istioinjector", "", append(os.Environ(), "ENABLE_NATIVE_SIDECARS=true"), filepath.Join(suite.istio, "istioinjector"),
		"-port", strconv.Itoa(port), "-cert-dir", dir, "-config-dir", suite.istioChart, "-gc-percent", "100")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-istio-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "bench.sidecar-injector.istio.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(fmt.Sprintf("https://127.0.0.1:%d/inject", port)), CABundle: suite.ca.CertPEM},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"bench-istio": "enabled"}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}},
		}},
	}
	api := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(context.Background(), mwc.Name, metav1.DeleteOptions{}) })
	ns := namespace(t, "bench-istio-probe", map[string]string{"bench-istio": "enabled"})
	eventually(t, wait, "Istio's injector answering", func() error {
		pod, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), appPod(fmt.Sprintf("probe-%d", time.Now().UnixNano())), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if find(pod.Spec.InitContainers, "istio-proxy") == nil && find(pod.Spec.Containers, "istio-proxy") == nil {
			return fmt.Errorf("pod %s not injected by Istio's injector", pod.Name)
		}
		return nil
	})
}

// benchWayRun creates the pods one way in a namespace of their own.
func benchWayRun(t *testing.T, w benchWay) benchFigures {
	t.Helper()
	ns := namespace(t, "bench", w.labels)
	before := apiserverHistogram(t, w.webhooks)
	var f benchFigures

	start := time.Now()
	benchDeployment(t, ns, w.injected)
	eventually(t, 5*wait, fmt.Sprintf("%d pods of the Deployment", benchDeploymentPods), func() error { return podsReady(ns, "web", benchDeploymentPods) })
	f.deployment = time.Since(start)

	lat, elapsed := directCreates(t, ns, w.injected)
	f.direct = elapsed
	slices.Sort(lat)
	f.p50, f.p99 = lat[len(lat)/2], lat[len(lat)*99/100]

	after := apiserverHistogram(t, w.webhooks)
	f.apiP50, f.apiP99 = after.minus(before).quantile(0.5), after.minus(before).quantile(0.99)
	pods, err := suite.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if find(p.Spec.InitContainers, "istio-proxy") != nil || find(p.Spec.Containers, "istio-proxy") != nil {
			f.injected++
		}
	}
	if want := map[bool]int{true: 0, false: len(pods.Items)}[w.webhooks == "" && w.injected == nil]; f.injected != want {
		t.Errorf("%s: %d of %d pods injected, want %d", w.name, f.injected, len(pods.Items), want)
	}
	return f
}

// benchDeployment creates the Deployment web of benchDeploymentPods
// replicas: app pods, or copies of injected.
func benchDeployment(t *testing.T, ns string, injected *corev1.Pod) {
	t.Helper()
	if injected == nil {
		deployment(t, ns, "web", benchDeploymentPods, nil, nil, false)
		return
	}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: injected.Annotations}, Spec: injected.Spec}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](benchDeploymentPods), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: tmpl}}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// injectedTemplate is an app pod as meshinject injects it, ready to be
// created again without a webhook: what the API server filled in is
// taken out.
func injectedTemplate(t *testing.T) *corev1.Pod {
	t.Helper()
	ns := namespace(t, "bench-template", map[string]string{"istio-injection": "enabled"})
	got := create(t, ns, appPod("template"))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: got.Labels, Annotations: got.Annotations}, Spec: *got.Spec.DeepCopy()}
	pod.Spec.NodeName = ""
	return pod
}

// directCreates creates benchDirectPods pods from benchConcurrency workers
// with an unthrottled client, and returns each create's latency and the
// time until all existed.
func directCreates(t *testing.T, ns string, injected *corev1.Pod) ([]time.Duration, time.Duration) {
	t.Helper()
	cfg := rest.CopyConfig(suite.cfg)
	cfg.QPS, cfg.Burst = 10000, 10000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan int)
	start := time.Now()
	for range benchConcurrency {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				pod := appPod(fmt.Sprintf("direct-%d", i))
				if injected != nil {
					pod = injected.DeepCopy()
					pod.Name = fmt.Sprintf("direct-%d", i)
				}
				if _, err := client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
					t.Errorf("create pod %d: %v", i, err)
					continue
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	for i := range benchDirectPods {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(lat) == 0 {
		t.Fatal("no pod created")
	}
	return lat, time.Since(start)
}

// histogram is a cumulative Prometheus histogram: bucket upper bounds and
// counts.
type histogram struct {
	le     []float64
	counts []float64
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{le: h.le, counts: slices.Clone(h.counts)}
	for i := range out.counts {
		if i < len(o.counts) {
			out.counts[i] -= o.counts[i]
		}
	}
	return out
}

// quantile interpolates linearly within the bucket holding q.
func (h histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return math.NaN()
	}
	rank := q * h.counts[len(h.counts)-1]
	lower, prev := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.le[i], 1) {
				return lower
			}
			return lower + (h.le[i]-lower)*(rank-prev)/math.Max(c-prev, 1)
		}
		lower, prev = h.le[i], c
	}
	return lower
}

// apiserverHistogram is kube-apiserver's
// apiserver_admission_webhook_admission_duration_seconds for the webhook
// entries whose name starts with prefix, summed over their series.
func apiserverHistogram(t *testing.T, prefix string) histogram {
	t.Helper()
	if prefix == "" {
		return histogram{}
	}
	raw, err := suite.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fam := testutil.MetricFamilies(t, string(raw))["apiserver_admission_webhook_admission_duration_seconds"]
	sums, total := map[float64]float64{}, 0.0
	for _, m := range fam.GetMetric() {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == "name" && strings.HasPrefix(l.GetValue(), prefix)
		}) {
			continue
		}
		for _, b := range m.GetHistogram().GetBucket() {
			sums[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
		total += float64(m.GetHistogram().GetSampleCount())
	}
	if total > 0 {
		sums[math.Inf(1)] = total // whether or not the exposition listed the +Inf bucket
	}
	var h histogram
	for le := range sums {
		h.le = append(h.le, le)
	}
	sort.Float64s(h.le)
	for _, le := range h.le {
		h.counts = append(h.counts, sums[le])
	}
	return h
}

// printBench prints the scale table and its ratios to no webhook.
func printBench(ways []benchWay, f []benchFigures) {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	}
	fmt.Printf("\n# bench-e2e: %d pods through a Deployment (kube-controller-manager), then %d direct creates at concurrency %d\n",
		benchDeploymentPods, benchDirectPods, benchConcurrency)
	fmt.Println("| way | Deployment: all pods | direct: all pods | create p50 | create p99 | API server admission p50 | p99 | injected |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for i, w := range ways {
		api50, api99 := "-", "-"
		if w.webhooks != "" {
			api50, api99 = fmt.Sprintf("%.1f ms", 1000*f[i].apiP50), fmt.Sprintf("%.1f ms", 1000*f[i].apiP99)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %d |\n", w.name, ms(f[i].deployment), ms(f[i].direct), ms(f[i].p50), ms(f[i].p99), api50, api99, f[i].injected)
	}
	printRatios(ways, f, 0, 1, 2, 3)
	printRatios(ways, f, 3, 1, 2)
}

// printRatios prints ways' figures over base's.
func printRatios(ways []benchWay, f []benchFigures, base int, of ...int) {
	r := func(a, b time.Duration) string { return fmt.Sprintf("%.2f×", float64(a)/float64(b)) }
	b := f[base]
	fmt.Printf("\n| way / %s | Deployment: all pods | direct: all pods | create p50 | create p99 |\n", ways[base].name)
	fmt.Println("|---|---|---|---|---|")
	for _, i := range of {
		g := f[i]
		fmt.Printf("| %s | %s | %s | %s | %s |\n", ways[i].name, r(g.deployment, b.deployment), r(g.direct, b.direct), r(g.p50, b.p50), r(g.p99, b.p99))
	}
}
