//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
	"github.com/meshinject/meshinject/internal/inject"
)

// goldenOutputs are the injected manifests checked against the API server:
// every golden output of the offline injector and the examples.
var goldenOutputs = []string{"../internal/inject/testdata/inject/*.injected", "../examples/*.injected"}

// invalidInputs are golden cases whose input pod is itself invalid, on
// purpose, with the reason.
var invalidInputs = map[string]string{
	"canonical-labels.yaml.injected": "its app label is longer than 63 characters, to test canonical-name truncation",
}

// TestInjectedPodsAccepted creates the pod of every workload in every golden
// output with --dry-run=server in a namespace the webhook does not serve,
// so the real API server's defaulting and validation see exactly what
// injection wrote (unique container names across both lists, native
// sidecars, probes, volumes, security contexts).
func TestInjectedPodsAccepted(t *testing.T) {
	ns := namespace(t, "accept", map[string]string{"istio-injection": "disabled"})
	accounts := map[string]bool{"default": true}
	checked := 0
	for _, pattern := range goldenOutputs {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if _, ok := invalidInputs[filepath.Base(f)]; ok {
				continue
			}
			for i, pod := range goldenPods(t, f) {
				checked++
				if sa := pod.Spec.ServiceAccountName; sa != "" && !accounts[sa] {
					createServiceAccount(t, ns, sa)
					accounts[sa] = true
				}
				pod.Namespace, pod.Name, pod.GenerateName = ns, "", "accept-"
				_, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Errorf("%s, workload %d: the API server refuses the injected pod: %v", filepath.Base(f), i, err)
				}
			}
		}
	}
	if checked < 70 {
		t.Errorf("checked %d injected pods, want at least 70", checked)
	}
	t.Logf("%d injected pods checked", checked)
}

// goldenPods returns the pod (template) of every workload in a golden
// output; outputs of error cases give none.
func goldenPods(t *testing.T, path string) []*corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\n# exit: 1") {
		return nil
	}
	docs, err := manifest.Split(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pods []*corev1.Pod
	for _, d := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal(d.Raw, &obj); err != nil || obj == nil {
			continue
		}
		kind, _ := obj["kind"].(string)
		tp, ok := inject.TemplatePath(kind)
		if !ok {
			continue
		}
		var tmpl any = obj
		for _, p := range tp {
			tmpl = tmpl.(map[string]any)[p]
		}
		b, err := json.Marshal(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{}
		if err := json.Unmarshal(b, pod); err != nil {
			t.Fatalf("%s: %s's pod: %v", path, kind, err)
		}
		pods = append(pods, pod)
	}
	return pods
}

func createServiceAccount(t *testing.T, ns, name string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := suite.client.CoreV1().ServiceAccounts(ns).Create(t.Context(), sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(fmt.Errorf("service account %s: %w", name, err))
	}
}

// TestRestrictedPodSecurity creates, with --dry-run=server, injected pods
// in a namespace whose Pod Security level is enforced as restricted: the
// pod injected with CNI and a RuntimeDefault seccomp profile is admitted;
// the same pod without the profile, and with istio-init (NET_ADMIN, root),
// are refused, which shows the namespace enforces the level.
func TestRestrictedPodSecurity(t *testing.T) {
	ns := namespace(t, "restricted", map[string]string{"istio-injection": "disabled",
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})
	dir := "../internal/inject/testdata/inject/"
	pods := goldenPods(t, dir+"seccomp-cni-restricted.yaml.injected")
	if len(pods) != 1 {
		t.Fatalf("seccomp-cni-restricted.yaml.injected holds %d pods, want 1", len(pods))
	}
	create := func(pod *corev1.Pod) error {
		pod = pod.DeepCopy()
		pod.Namespace, pod.Name, pod.GenerateName = ns, "", "restricted-"
		_, err := suite.client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	if err := create(pods[0]); err != nil {
		t.Errorf("the pod injected with CNI and seccompProfile RuntimeDefault is refused: %v", err)
	}
	noProfile := pods[0].DeepCopy()
	for _, list := range [][]corev1.Container{noProfile.Spec.InitContainers, noProfile.Spec.Containers} {
		for i := range list {
			if list[i].Name == "istio-proxy" || list[i].Name == "istio-validation" {
				list[i].SecurityContext.SeccompProfile = nil
			}
		}
	}
	if err := create(noProfile); err == nil || !strings.Contains(err.Error(), "seccompProfile") {
		t.Errorf("without the seccomp profile: err %v, want a refusal naming seccompProfile", err)
	}
	withInit := goldenPods(t, dir+"seccomp.yaml.injected")[0]
	withInit.Spec.Containers[0].SecurityContext = pods[0].Spec.Containers[0].SecurityContext
	if err := create(withInit); err == nil || !strings.Contains(err.Error(), "istio-init") {
		t.Errorf("with istio-init: err %v, want a refusal naming istio-init", err)
	}
}
