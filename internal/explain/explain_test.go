package explain

import (
	"strings"
	"testing"
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
	w := matchWebhook(blue, "shop", map[string]string{"istio.io/rev": "blue"}, nil)
	if !w.Sent || !w.Entries[0].Matches {
		t.Errorf("a namespace istio.io/rev=blue is not sent to the blue revision: %+v", w)
	}
	w = matchWebhook(blue, "shop", map[string]string{"istio.io/rev": "canary"}, nil)
	if w.Sent {
		t.Errorf("a namespace istio.io/rev=canary is sent to the blue revision: %+v", w)
	}
	if !strings.Contains(w.Entries[0].Reason, "istio.io/rev=canary (want blue)") {
		t.Errorf("reason %q does not say what the label is and what is wanted", w.Entries[0].Reason)
	}
}
