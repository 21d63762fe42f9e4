package webhook

import (
	"slices"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// requestLogger is the admission.Webhook LogConstructor: the request's
// identity on every line logged for it, as controller-runtime's default
// does, without encoding those values for the many requests that log
// nothing (zap encodes With fields eagerly).
func requestLogger(base logr.Logger, req *admission.Request) logr.Logger {
	sink := base.GetSink()
	if sink == nil || req == nil {
		return base
	}
	// The wrapper is one more frame between the caller and the sink.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	l := logr.New(lazySink{sink: sink})
	return l.WithValues("uid", req.UID, "kind", req.Kind.Kind, "namespace", req.Namespace,
		"name", req.Name, "operation", req.Operation, "user", req.UserInfo.Username)
}

// lazySink keeps WithValues pairs and hands them to the wrapped sink only
// with a line that is actually logged.
type lazySink struct {
	sink logr.LogSink
	kv   []any
}

var _ logr.CallDepthLogSink = lazySink{}

// Init does nothing: the wrapped sink was initialised by its own logger,
// and requestLogger accounts for this wrapper's frame.
func (lazySink) Init(logr.RuntimeInfo) {}

func (l lazySink) Enabled(level int) bool { return l.sink.Enabled(level) }

func (l lazySink) Info(level int, msg string, kv ...any) {
	l.sink.Info(level, msg, l.with(kv)...)
}

func (l lazySink) Error(err error, msg string, kv ...any) {
	l.sink.Error(err, msg, l.with(kv)...)
}

func (l lazySink) WithValues(kv ...any) logr.LogSink {
	return lazySink{sink: l.sink, kv: l.with(kv)}
}

func (l lazySink) WithName(name string) logr.LogSink {
	return lazySink{sink: l.sink.WithName(name), kv: l.kv}
}

func (l lazySink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := l.sink.(logr.CallDepthLogSink); ok {
		return lazySink{sink: cd.WithCallDepth(depth), kv: l.kv}
	}
	return l
}

// with returns l's pairs followed by kv, never sharing kv's backing array.
func (l lazySink) with(kv []any) []any {
	if len(kv) == 0 {
		return l.kv
	}
	return append(slices.Clip(l.kv), kv...)
}
