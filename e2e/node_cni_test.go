//go:build node

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// istioValidationFailed opens the message Istio's istio-validation gives
// when the pod's capture rules are not there.
const istioValidationFailed = "iptables validation failed; workload is not ready for Istio."

// testMeshCNI: meshinject installed by its chart as revision cni with
// pilot.cni.enabled injects istio-validation (as the proxy's user, no
// capability) instead of istio-init. Where the node's CNI chain set up the
// capture rules (cnistandin, standing in for Istio's CNI plugin, in
// namespaces named cniNamespacePrefix...), the pod runs and its traffic is
// captured; where it did not, istio-validation fails the pod with Istio's
// message.
func testMeshCNI(t *testing.T) {
	if !strings.Contains(nodeCNIChain(t), "cnistandin") {
		t.Skip("the node's CNI chain has no cnistandin (E2E_ISTIO is not set)")
	}
	hub, tag, _ := istioImages(t)
	helm(t, "install", "meshinject-cni", filepath.Join(suite.repo, "deploy/charts/meshinject"), "-n", "meshinject",
		"--set", "revision=cni", "--set", "tls.mode=self-managed", "--set", "global.hub="+hub, "--set", "global.tag="+tag,
		"--set", "global.caAddress="+istiodAddress, "--set", "meshConfig.defaultConfig.discoveryAddress="+istiodAddress,
		"--set", "pilot.cni.enabled=true")
	t.Cleanup(func() { uninstall(t, "meshinject-cni", "meshinject-cni") })
	rollout(t, "meshinject", "meshinject-cni")
	revLabel := map[string]string{"istio.io/rev": "cni"}
	withRules := namespace(t, strings.TrimSuffix(cniNamespacePrefix, "-"), revLabel)
	webhookServes(t, withRules)

	t.Run("rules", func(t *testing.T) {
		pod := runNetcheck(t, withRules, "cni", nil)
		v := find(pod.Spec.InitContainers, "istio-validation")
		if v == nil || find(pod.Spec.InitContainers, "istio-init") != nil {
			t.Fatalf("init containers %v: want istio-validation and no istio-init", names(pod.Spec.InitContainers))
		}
		if sc := v.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1337 || sc.Capabilities == nil || len(sc.Capabilities.Add) > 0 {
			t.Errorf("istio-validation's securityContext %+v: want user 1337 and no added capability", sc)
		}
		body, err := getFromNode(t.Context(), "http://"+pod.Status.PodIP+":8080/")
		if err != nil || !strings.Contains(body, "port 8080") {
			t.Errorf("GET the pod: %v %q", err, body)
		}
		assertCaptured(t, withRules, "cni", "inbound", pod.Status.PodIP+":8080", true)
	})

	t.Run("no-rules", func(t *testing.T) {
		ns := namespace(t, "mesh-cni-none", revLabel)
		create(t, ns, appNetcheck("cni"))
		var msg string
		eventually(t, 2*wait, "istio-validation failing", func() error {
			got, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), "cni", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, s := range got.Status.InitContainerStatuses {
				if term := terminatedOf(s); s.Name == "istio-validation" && term != nil && term.ExitCode != 0 {
					msg = term.Message
					return nil
				}
			}
			return &notReady{pod: got}
		})
		if msg == "" {
			msg, _ = kubectl("-n", ns, "logs", "cni", "-c", "istio-validation", "--previous")
		}
		if !strings.Contains(msg, istioValidationFailed) {
			t.Errorf("istio-validation failed with %q, want Istio's %q", msg, istioValidationFailed)
		}
	})
}

// terminatedOf is the container's current or last termination.
func terminatedOf(s corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if s.State.Terminated != nil {
		return s.State.Terminated
	}
	return s.LastTerminationState.Terminated
}

// nodeCNIChain is the node's CNI network configuration.
func nodeCNIChain(t *testing.T) string {
	t.Helper()
	needsNode(t)
	b, err := os.ReadFile(filepath.Join(suite.work, "node", "cni", "10-meshinject.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
