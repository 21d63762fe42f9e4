//go:build node

package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// proxyReadyURL is what an application asks first to tell whether the
// proxy was Ready when it started (the agent's readiness through the
// stand-in's :15021).
const proxyReadyURL = "http://127.0.0.1:15021/healthz/ready"

// orderPod is an application whose own init container calls the target
// Service and whose container asks proxyReadyURL before it serves.
func orderPod(name, targetURL string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name: "fetch", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"get", targetURL},
			}},
			Containers: []corev1.Container{{
				Name: "app", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", "8080"},
				Env: []corev1.EnvVar{{Name: "NETCHECK_FIRST", Value: proxyReadyURL}},
			}},
		},
	}
}

// testMeshNativeSidecars: istio-proxy, a native sidecar, is Ready before
// the app's own init container starts, which then reaches a Service
// through it; the app container finds the proxy Ready when it starts; a
// Job's pod completes and reaches Succeeded.
func testMeshNativeSidecars(t *testing.T) {
	svc, _ := startTarget(t)
	target := fmt.Sprintf("http://target.%s.svc:8080/", svc.Namespace)
	ns := namespace(t, "mesh-native", map[string]string{"istio-injection": "enabled"})

	t.Run("order", func(t *testing.T) {
		pod := create(t, ns, orderPod("order", target, nil))
		if got := names(pod.Spec.InitContainers); strings.Join(got, ",") != "istio-init,istio-proxy,fetch" {
			t.Fatalf("init containers %v, want istio-init, istio-proxy, fetch", got)
		}
		eventually(t, 2*wait, "pod order Ready", func() error { return podReady(t.Context(), ns, "order") })
		if out := mustKubectl(t, "-n", ns, "logs", "order", "-c", "fetch"); !strings.Contains(out, target+": 200") {
			t.Errorf("the app's init container did not reach %s:\n%s", target, out)
		}
		assertCaptured(t, ns, "order", "outbound", net.JoinHostPort(svc.Spec.ClusterIP, "8080"), true)
		assertFirstGet(t, ns, "order", true)
		st := startTimes(t, ns, "order")
		if st["istio-proxy"].After(st["fetch"]) || st["fetch"].After(st["app"]) {
			t.Errorf("start times %v: want istio-proxy, then fetch, then app", st)
		}
	})

	t.Run("job", func(t *testing.T) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "once"},
			Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "once"}},
					Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
						Name: "app", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"get", target},
					}}},
				},
			},
		}
		if _, err := suite.client.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*wait, "Job once complete", func() error {
			j, err := suite.client.BatchV1().Jobs(ns).Get(t.Context(), "once", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range j.Status.Conditions {
				if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
					return nil
				}
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
					t.Fatalf("Job failed: %s", c.Message)
				}
			}
			return fmt.Errorf("Job status %+v", j.Status)
		})
		pod := podsOf(t, ns, "app=once", 1)[0]
		if pod.Status.Phase != corev1.PodSucceeded {
			t.Errorf("the Job's pod is %s, want Succeeded", pod.Status.Phase)
		}
		assertSidecarImage(t, &pod, true, "default", meshProxyImage)
	})
}

// testMeshClassic: with native sidecars off, holdApplicationUntilProxyStarts
// puts istio-proxy first with a postStart hook that waits for it, so the
// app finds the proxy Ready; without it, the app may start first (the
// test logs what it found).
func testMeshClassic(t *testing.T) {
	ns := namespace(t, "mesh-classic", map[string]string{"istio-injection": "enabled"})
	for _, hold := range []bool{true, false} {
		name := map[bool]string{true: "hold", false: "nohold"}[hold]
		t.Run(name, func(t *testing.T) {
			ann := map[string]string{"sidecar.istio.io/nativeSidecar": "false"}
			if hold {
				ann["proxy.istio.io/config"] = `{"holdApplicationUntilProxyStarts": true}`
			}
			pod := runNetcheck(t, ns, name, ann, func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "NETCHECK_FIRST", Value: proxyReadyURL}}
			})
			if c := names(pod.Spec.Containers); hold && c[0] != "istio-proxy" {
				t.Errorf("containers %v: want istio-proxy first with hold", c)
			}
			if find(pod.Spec.InitContainers, "istio-proxy") != nil {
				t.Errorf("istio-proxy is a native sidecar with nativeSidecar=false")
			}
			found := assertFirstGet(t, ns, name, hold)
			t.Logf("classic, hold %t: the app found the proxy Ready at its start: %t; start times %v", hold, found, startTimes(t, ns, name))
		})
	}
}

// testMeshProbes: the kubelet's probes of the app go through the agent's
// :15020/app-health and carry the app's answer: a readiness probe the app
// fails keeps the pod from Ready, a liveness probe it fails restarts the
// app, though istio-proxy is Ready.
func testMeshProbes(t *testing.T) {
	ns := namespace(t, "mesh-probes", map[string]string{"istio-injection": "enabled"})
	failing := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/nope", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1, FailureThreshold: 2}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probes", Labels: map[string]string{"app": "probes"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "unready", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", "8080"}, ReadinessProbe: failing},
			{Name: "dying", Image: netcheckImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", "9090"}, LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/nope", Port: intstr.FromInt32(9090)}}, PeriodSeconds: 1, FailureThreshold: 2,
			}},
		}},
	}
	pod := create(t, ns, p)
	assertProbesRewritten(t, pod, "unready")
	assertProbesRewritten(t, pod, "dying")
	eventually(t, 2*wait, "dying restarted by its liveness probe", func() error {
		got, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), "probes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, s := range got.Status.ContainerStatuses {
			if s.Name == "dying" && s.RestartCount > 0 {
				return nil
			}
		}
		out, _ := kubectl("-n", ns, "describe", "pod", "probes")
		return fmt.Errorf("no restart yet:\n%s", out)
	})
	got, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), "probes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(got.Status.InitContainerStatuses, got.Status.ContainerStatuses...) {
		switch {
		case s.Name == "istio-proxy" && !s.Ready:
			t.Errorf("istio-proxy is not Ready")
		case s.Name == "unready" && s.Ready:
			t.Errorf("unready is Ready though its readiness probe gets 404 from the app")
		}
	}
	if err := podReady(t.Context(), ns, "probes"); err == nil {
		t.Errorf("pod probes is Ready")
	}
	// The kubelet's own account: each probe ran and got the app's 404.
	eventually(t, wait, "the kubelet's probe failure events", func() error {
		evs, err := suite.client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=probes,reason=Unhealthy"})
		if err != nil {
			return err
		}
		var msgs []string
		for _, e := range evs.Items {
			msgs = append(msgs, e.Message)
		}
		all := strings.Join(msgs, "\n")
		for _, want := range []string{"Readiness probe failed: HTTP probe failed with statuscode: 404", "Liveness probe failed: HTTP probe failed with statuscode: 404"} {
			if !strings.Contains(all, want) {
				return fmt.Errorf("no event %q among %q", want, msgs)
			}
		}
		return nil
	})
}

// assertFirstGet reads what the app found at proxyReadyURL when it
// started; want true fails the test unless it was 200. It returns whether
// it was.
func assertFirstGet(t *testing.T, ns, pod string, want bool) bool {
	t.Helper()
	var line string
	eventually(t, wait, "the app's first GET", func() error {
		out, err := kubectl("-n", ns, "logs", pod, "-c", "app")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "netcheck first GET") {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no first GET in %q", out)
	})
	found := strings.HasSuffix(line, ": 200")
	if want && !found {
		t.Errorf("the app did not find the proxy Ready when it started: %s", line)
	}
	return found
}

// startTimes returns when each container of the pod started.
func startTimes(t *testing.T, ns, name string) map[string]time.Time {
	t.Helper()
	pod, err := suite.client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, s := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		switch {
		case s.State.Running != nil:
			out[s.Name] = s.State.Running.StartedAt.Time
		case s.State.Terminated != nil:
			out[s.Name] = s.State.Terminated.StartedAt.Time
		}
	}
	return out
}
