//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// chartNamespace is where the scenario installs the chart's releases.
const chartNamespace = "meshinject-charts"

// chartRevision installs the chart as revision rev in self-managed TLS
// mode, its webhooks pointing at a local meshinject serve on port, and
// starts that server as the chart's ServiceAccount would run it: with the
// chart's RBAC and configuration (the ConfigMap's files).
func chartRevision(t *testing.T, rev string, port int, set ...string) *server {
	t.Helper()
	release := "mesh-" + rev
	args := []string{"install", release, filepath.Join(suite.repo, "deploy/charts/meshinject"), "--namespace", chartNamespace, "--create-namespace",
		"--set", "revision=" + rev, "--set", "tls.mode=self-managed", "--set", fmt.Sprintf("webhook.url=https://127.0.0.1:%d/inject", port)}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	helm(t, args...)
	t.Cleanup(func() { helm(t, "uninstall", release, "--namespace", chartNamespace) })

	cm, err := suite.client.CoreV1().ConfigMaps(chartNamespace).Get(t.Context(), "meshinject-"+rev+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{port: port, healthPort: port - 1000, configDir: filepath.Join(suite.work, release, "config")}
	if err := os.MkdirAll(s.configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range cm.Data {
		if err := writeAtomic(filepath.Join(s.configDir, k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := writeKubeconfig(release, suite.cfg, "system:serviceaccount:"+chartNamespace+":meshinject-"+rev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.start(release, []string{"serve", "--host=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--health-addr=127.0.0.1:" + strconv.Itoa(s.healthPort), "--metrics-addr=127.0.0.1:" + strconv.Itoa(port-2000),
		"--config-dir=" + s.configDir, "--kubeconfig=" + sa, "--revision=" + rev, "--tls-mode=self-managed",
		"--namespace=" + chartNamespace, "--tls-extra-names=127.0.0.1", "--tls-check-interval=1s", "--log-level=debug"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// withoutSuiteDefault takes the suite's default-revision configuration away
// for the test: the tag default takes its pods.
func withoutSuiteDefault(t *testing.T) {
	t.Helper()
	api := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	saved, err := api.Get(t.Context(), mwcDefault, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Delete(t.Context(), mwcDefault, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		saved.ResourceVersion, saved.UID = "", ""
		if _, err := api.Create(context.Background(), saved, metav1.CreateOptions{}); err != nil {
			t.Errorf("restore %s: %v", mwcDefault, err)
		}
	})
}

// TestChartRevisionTagUpgrade is a canary upgrade with the chart and
// meshinject tag: revision a is installed as tag default, revision b
// beside it; moving the tag to b and restarting a Deployment through
// kube-controller-manager gives new pods b's sidecar, and tag list names
// the older pods as needing a restart.
func TestChartRevisionTagUpgrade(t *testing.T) {
	needsLocal(t)
	withoutSuiteDefault(t)
	ctx := t.Context()
	chartRevision(t, "a", 19445, "revisionTags={default}")
	eventually(t, wait, "the caBundle of a's configurations", func() error { return caBundlesSet("meshinject-sidecar-injector-a", "meshinject-revision-tag-default") })

	ns := namespace(t, "tagged", map[string]string{"istio.io/rev": "default"})
	deployment(t, ns, "web", 2, nil, nil, false)
	eventually(t, wait, "2 pods of web", func() error { return podsReady(ns, "web", 2) })
	for _, p := range podsOf(t, ns, "app=web", 2) {
		assertSidecar(t, &p, true, "a")
	}

	chartRevision(t, "b", 19446)
	eventually(t, wait, "the caBundle of b's configuration", func() error { return caBundlesSet("meshinject-sidecar-injector-b") })
	if out, err := meshinjectCLI(t, "tag", "set", "default", "--revision", "b"); err == nil || !strings.Contains(out, `points to revision "a": --overwrite moves it to "b"`) {
		t.Fatalf("tag set without --overwrite: %v\n%s", err, out)
	}
	if out, err := meshinjectCLI(t, "tag", "set", "default", "--revision", "b", "--overwrite"); err != nil {
		t.Fatalf("tag set: %v\n%s", err, out)
	}
	// The tag is meshinject tag's now: helm uninstall of a leaves it.
	t.Cleanup(func() {
		if out, err := meshinjectCLI(t, "tag", "remove", "default", "--skip-confirmation"); err != nil {
			t.Errorf("tag remove --skip-confirmation: %v\n%s", err, out)
		}
	})

	restart := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	if _, err := suite.client.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(restart), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var fresh []corev1.Pod
	eventually(t, wait, "a pod of the restarted Deployment", func() error {
		fresh = fresh[:0]
		pods, err := suite.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if _, ok := p.Annotations["kubectl.kubernetes.io/restartedAt"]; ok {
				fresh = append(fresh, p)
			}
		}
		if len(fresh) == 0 {
			return fmt.Errorf("no new pod yet among %d", len(pods.Items))
		}
		return nil
	})
	for _, p := range fresh {
		assertSidecar(t, &p, true, "b")
	}

	out, err := meshinjectCLI(t, "tag", "list", "-o", "json", "--config-namespace", chartNamespace)
	if err != nil {
		t.Fatalf("tag list: %v\n%s", err, out)
	}
	checkTagList(t, out, ns, len(fresh))
	text, err := meshinjectCLI(t, "tag", "list", "--config-namespace", chartNamespace)
	t.Logf("meshinject tag list:\n%s", text)
	if err != nil || !strings.Contains(text, "injected by revision a") {
		t.Errorf("tag list: %v, want the stale pods named:\n%s", err, text)
	}
	if out, err := meshinjectCLI(t, "tag", "remove", "default"); err == nil || !strings.Contains(out, "still serves namespaces") || !strings.Contains(out, ns) {
		t.Errorf("tag remove of a tag in use: %v\n%s", err, out)
	}
}

// checkTagList checks tag list's JSON: the tag default on b serves ns,
// whose pods of revision a (and only those) are stale.
func checkTagList(t *testing.T, out, ns string, fresh int) {
	t.Helper()
	var doc struct {
		Items []struct {
			Tag, Revision, Note string
			Namespaces          []string
			Pods                int
			Stale               []struct{ Namespace, Name, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("tag list -o json: %v\n%s", err, out)
	}
	if len(doc.Items) != 1 {
		t.Fatalf("tag list: %d tags, want 1:\n%s", len(doc.Items), out)
	}
	// The tag default also serves the istio-injection=enabled namespaces
	// of other scenarios: only ns's pods are the scenario's.
	tag := doc.Items[0]
	if tag.Tag != "default" || tag.Revision != "b" || !slices.Contains(tag.Namespaces, ns) || tag.Note != "" {
		t.Errorf("tag list: %+v, want tag default on b serving %s", tag, ns)
	}
	stale := 0
	for _, s := range tag.Stale {
		if s.Namespace != ns {
			continue
		}
		stale++
		if s.Reason != "injected by revision a" {
			t.Errorf("stale pod %s: %q, want injected by revision a", s.Name, s.Reason)
		}
	}
	if stale != 2 || tag.Pods < fresh+2 {
		t.Errorf("tag list: %d stale pods in %s, want the 2 of revision a (%d pods in all, at least %d):\n%s", stale, ns, tag.Pods, fresh+2, out)
	}
}

// TestChartDryRun: the API server accepts what the chart renders in each
// TLS mode with every optional part on, the monitoring objects checked
// against the Prometheus operator's CRDs.
func TestChartDryRun(t *testing.T) {
	needsLocal(t)
	monitoring := []string{"metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true",
		"metrics.prometheusRule.enabled=true", "dashboards.enabled=true", "autoscaling.enabled=true"}
	for name, set := range map[string][]string{
		"cert-manager": append([]string{"revisionTags={prod}"}, monitoring...),
		"self-managed": append([]string{"tls.mode=self-managed", "revision=blue", "revisionTags={default,prod}", "metrics.secure=true", "hostNetwork=true", "port=15017"}, monitoring...),
		"secret":       append([]string{"tls.mode=secret", "tls.caBundle=Q0E=", "webhook.url=https://injector.example:9443/inject", "sidecarInjectorWebhook.enableNamespacesByDefault=true"}, monitoring...),
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "meshinject", filepath.Join(suite.repo, "deploy/charts/meshinject"), "--namespace", "meshinject"}
			for _, s := range set {
				args = append(args, "--set", s)
			}
			file := filepath.Join(t.TempDir(), "chart.yaml")
			if err := os.WriteFile(file, []byte(helm(t, args...)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := kubectl("apply", "--dry-run=server", "-f", file); err != nil {
				t.Errorf("kubectl apply --dry-run=server the chart (%s): %v\n%s", strings.Join(set, " "), err, out)
			}
		})
	}
}
