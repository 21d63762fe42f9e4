//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestWorkloadEvents: pods that kube-controller-manager creates for
// Deployments leave their injection's event on the Deployment: Injected,
// one event (a series) for a scale-up of several replicas; NotInjected
// with the reason; InjectionDenied with the refusal.
func TestWorkloadEvents(t *testing.T) {
	needsLocal(t) // waits on kube-controller-manager of our own
	ns := namespace(t, "events", map[string]string{"istio-injection": "enabled"})
	deployment(t, ns, "web", 1, nil, nil, false)
	deployment(t, ns, "optout", 1, map[string]string{"sidecar.istio.io/inject": "false"}, nil, false)
	deployment(t, ns, "bad", 1, map[string]string{"sidecar.istio.io/proxyCPU": "fast"}, nil, false)
	eventually(t, wait, "the first web pod", func() error { return podsReady(ns, "web", 1) })
	scale(t, ns, "web", 5)
	eventually(t, wait, "five web pods", func() error { return podsReady(ns, "web", 5) })
	for _, c := range []struct{ name, kind, reason, note string }{
		{"web", corev1.EventTypeNormal, "Injected", "injected revision default with templates sidecar"},
		{"optout", corev1.EventTypeWarning, "NotInjected", "not injected: annotation sidecar.istio.io/inject=false"},
		{"bad", corev1.EventTypeWarning, "InjectionDenied", `invalid sidecar.istio.io/proxyCPU "fast"`},
	} {
		var got []eventsv1.Event
		eventually(t, wait, c.reason+" event on deployment "+c.name, func() error {
			var err error
			got, err = workloadEvents(t, ns, c.name, c.reason)
			switch {
			case err != nil:
				return err
			case len(got) == 0:
				return fmt.Errorf("none yet")
			case c.name == "web" && (got[0].Series == nil || got[0].Series.Count < 2):
				// The recorder sends the second of a series at once, later
				// ones with its heartbeat.
				return fmt.Errorf("the five pods' Injected events are not one series yet: %d events", len(got))
			}
			return nil
		})
		if len(got) != 1 {
			t.Errorf("deployment %s: %d %s events, want one (repeats aggregate)", c.name, len(got), c.reason)
		}
		if e := got[0]; e.Type != c.kind || !strings.Contains(e.Note, c.note) || e.ReportingController != "meshinject" {
			t.Errorf("deployment %s: event %s %s %q by %q, want %s with %q by meshinject", c.name, e.Type, e.Reason, e.Note, e.ReportingController, c.kind, c.note)
		}
	}
}

// deployment creates a Deployment of app pods.
func deployment(t *testing.T, ns, name string, replicas int32, annotations, labels map[string]string, hostNetwork bool) {
	t.Helper()
	l := map[string]string{"app": name}
	for k, v := range labels {
		l[k] = v
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: annotations},
				Spec: corev1.PodSpec{HostNetwork: hostNetwork, Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	s, err := suite.client.AppsV1().Deployments(ns).GetScale(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := suite.client.AppsV1().Deployments(ns).UpdateScale(t.Context(), name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podsReady is nil once app=name has n pods.
func podsReady(ns, name string, n int) error {
	pods, err := suite.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		return err
	}
	if len(pods.Items) != n {
		return fmt.Errorf("%d pods of %s, want %d", len(pods.Items), name, n)
	}
	return nil
}

// workloadEvents are the events of reason about Deployment ns/name.
func workloadEvents(t *testing.T, ns, name, reason string) ([]eventsv1.Event, error) {
	t.Helper()
	list, err := suite.client.EventsV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Deployment" && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out, nil
}
