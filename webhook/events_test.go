package webhook

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// recordedEvent is one event a fakeRecorder was given.
type recordedEvent struct {
	ref                  *corev1.ObjectReference
	kind, reason, action string
	note                 string
}

// fakeRecorder keeps the events it is given; with block set it never
// returns, as a recorder stuck on an unreachable API server.
type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
	block  chan struct{}
}

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, kind, reason, action, note string, args ...any) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ref, _ := regarding.(*corev1.ObjectReference)
	if len(args) > 0 {
		note = args[0].(string)
	}
	f.events = append(f.events, recordedEvent{ref: ref, kind: kind, reason: reason, action: action, note: note})
}

func (f *fakeRecorder) all() []recordedEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedEvent(nil), f.events...)
}

// eventsHandler is a test handler with events going to rec, forwarded
// until the test ends.
func eventsHandler(t *testing.T, rec eventRecorder, queue int) (*Handler, *Events) {
	t.Helper()
	h, _ := newTestHandler(t, true)
	ev, err := NewEvents(rec, queue, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h.opts.Events = ev
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ev.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, ev
}

// TestHandleEvents: a review the engine sees leaves an event on the pod's
// workload (the Deployment behind a ReplicaSet's pod): Injected with the
// revision and templates, NotInjected with the reason, InjectionDenied
// with the refusal.
func TestHandleEvents(t *testing.T) {
	t.Parallel()
	rec := &fakeRecorder{}
	h, _ := eventsHandler(t, rec, 0)
	owned := `,"labels":{"app":"web","pod-template-hash":"5d9c7b8f6c"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d9c7b8f6c","uid":"u","controller":true}]`
	for _, req := range []admission.Request{
		podRequest(owned, ""),
		podRequest(owned, `,"hostNetwork":true`),
		podRequest(owned+`,"annotations":{"sidecar.istio.io/proxyCPU":"fast"}`, ""),
	} {
		h.Handle(testCtx(t, "/inject"), req)
	}
	var got []recordedEvent
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = rec.all()
	}
	want := []struct{ kind, reason, note string }{
		{corev1.EventTypeNormal, reasonInjected, "injected revision default with templates sidecar (config "},
		{corev1.EventTypeWarning, reasonNotInjected, "not injected: pod has hostNetwork"},
		{corev1.EventTypeWarning, reasonInjectionDenied, `invalid sidecar.istio.io/proxyCPU "fast"`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.ref == nil || g.ref.Kind != "Deployment" || g.ref.Name != "web" || g.ref.Namespace != "shop" || g.ref.APIVersion != "apps/v1" {
			t.Errorf("event %d regards %+v, want Deployment shop/web", i, g.ref)
		}
		if g.kind != w.kind || g.reason != w.reason || !strings.Contains(g.note, w.note) {
			t.Errorf("event %d: %s %s %q, want %s %s containing %q", i, g.kind, g.reason, g.note, w.kind, w.reason, w.note)
		}
	}
}

// TestEventsNeverHoldAdmission: with the recorder stuck (an API server
// that does not answer), reviews are answered all the same; the events
// beyond the queue are dropped and counted.
func TestEventsNeverHoldAdmission(t *testing.T) {
	t.Parallel()
	rec := &fakeRecorder{block: make(chan struct{})}
	defer close(rec.block)
	h, ev := eventsHandler(t, rec, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if resp := h.Handle(testCtx(t, "/inject"), podRequest("", "")); !resp.Allowed {
				t.Errorf("review refused: %v", resp.Result)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("reviews wait for the stuck event recorder")
	}
	// Two are queued and at most one is with the stuck recorder: the rest
	// are dropped.
	if n := testutil.ToFloat64(ev.dropped); n < 47 || n > 48 {
		t.Errorf("meshinject_events_dropped_total = %v, want 47 or 48", n)
	}
}
