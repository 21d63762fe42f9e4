package webhook

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/promreg"
)

// eventRecorder records an event about an object. client-go's
// events.eventRecorder (controller-runtime's manager.GetEventRecorder)
// satisfies it; it aggregates repeated events into a series, so a
// scale-up of many replicas is one event, not one API call each.
type eventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Event reasons.
const (
	reasonInjected        = "Injected"
	reasonNotInjected     = "NotInjected"
	reasonInjectionDenied = "InjectionDenied"
)

// defaultEventQueue is Events' default queue length.
const defaultEventQueue = 1024

// Events emits the reviews' events off the admission path: an admission
// puts its event in a bounded queue and goes on; Run forwards the queue to
// the recorder. When the queue is full (the API server is slow or
// unreachable) the event is dropped and counted in
// meshinject_events_dropped_total, never waited for.
type Events struct {
	rec     eventRecorder
	queue   chan event
	dropped prometheus.Counter
}

type event struct {
	regarding         *corev1.ObjectReference
	kind, reason, msg string
}

// NewEvents returns Events for rec with a queue of n (default
// DefaultEventQueue), registering its metric with reg.
func NewEvents(rec eventRecorder, n int, reg prometheus.Registerer) (*Events, error) {
	if n <= 0 {
		n = defaultEventQueue
	}
	e := &Events{rec: rec, queue: make(chan event, n), dropped: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshinject_events_dropped_total",
		Help: "Injection events not recorded because the queue to the API server was full.",
	})}
	if err := promreg.Register(reg, &e.dropped); err != nil {
		return nil, fmt.Errorf("register event metrics: %w", err)
	}
	return e, nil
}

// Run forwards queued events to the recorder until ctx ends.
func (e *Events) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-e.queue:
			e.rec.Eventf(ev.regarding, nil, ev.kind, ev.reason, "Inject", "%s", ev.msg)
		}
	}
}

// emit queues an event about workload w in namespace ns; a nil *Events
// emits nothing.
func (e *Events) emit(w inject.Workload, ns, kind, reason, msg string) {
	if e == nil || w.Name == "" {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: w.APIVersion, Kind: w.Kind, Namespace: ns, Name: w.Name}
	select {
	case e.queue <- event{regarding: ref, kind: kind, reason: reason, msg: msg}:
	default:
		e.dropped.Inc()
	}
}
