package explain

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestWebhooksPerRevision: the default revision explains against
// deploy/base's configuration; another revision against the canary
// overlay's, named and selecting as the overlay would for that revision.
func TestWebhooksPerRevision(t *testing.T) {
	t.Parallel()
	def, err := Webhooks("default")
	if err != nil {
		t.Fatal(err)
	}
	if def.Name != "meshinject-sidecar-injector" || len(def.Webhooks) != 4 {
		t.Errorf("default: %s with %d entries, want meshinject-sidecar-injector with 4", def.Name, len(def.Webhooks))
	}
	blue, err := Webhooks("blue")
	if err != nil {
		t.Fatal(err)
	}
	if blue.Name != "meshinject-sidecar-injector-blue" || len(blue.Webhooks) != 2 {
		t.Errorf("blue: %s with %d entries, want meshinject-sidecar-injector-blue with 2", blue.Name, len(blue.Webhooks))
	}
	w := matchWebhook(blue, "shop", map[string]string{"istio.io/rev": "blue"}, &corev1.Pod{})
	if !w.Sent || !w.Entries[0].Matches {
		t.Errorf("a namespace istio.io/rev=blue is not sent to the blue revision: %+v", w)
	}
	w = matchWebhook(blue, "shop", map[string]string{"istio.io/rev": "canary"}, &corev1.Pod{})
	if w.Sent {
		t.Errorf("a namespace istio.io/rev=canary is sent to the blue revision: %+v", w)
	}
	if !strings.Contains(w.Entries[0].Reason, "istio.io/rev=canary (want blue)") {
		t.Errorf("reason %q does not say what the label is and what is wanted", w.Entries[0].Reason)
	}
}

// TestMatchConditions: meshinject's entries keep hostNetwork and mirror
// (static) pods away from the webhook, as the API server evaluates their
// CEL matchConditions; other pods pass them.
func TestMatchConditions(t *testing.T) {
	t.Parallel()
	mwc, err := Webhooks("default")
	if err != nil {
		t.Fatal(err)
	}
	enabled := map[string]string{"istio-injection": "enabled"}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"a": "b"}}}
	if w := matchWebhook(mwc, "shop", enabled, plain); !w.Sent {
		t.Fatalf("a plain pod in an enabled namespace is not sent: %+v", w)
	}
	host := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true}}
	mirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"kubernetes.io/config.mirror": "x"}}}
	for name, c := range map[string]struct {
		pod  *corev1.Pod
		cond string
	}{"hostNetwork": {host, "not-host-network"}, "mirror": {mirror, "not-mirror-pod"}} {
		w := matchWebhook(mwc, "shop", enabled, c.pod)
		if w.Sent {
			t.Errorf("%s pod is sent: %+v", name, w)
		}
		if r := w.Entries[2].Reason; !strings.Contains(r, "match condition "+c.cond+" is false") {
			t.Errorf("%s pod: reason %q, want the match condition %s", name, r, c.cond)
		}
	}
}
