package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/podcodec"
	"github.com/meshinject/meshinject/webhook/internal/rawpatch"
)

// EngineSource returns the engine to use for one review. The config
// reloader implements it; a review keeps the engine it started with.
type EngineSource interface {
	Engine() *inject.Engine
}

// EngineSourceFunc adapts a function to EngineSource.
type EngineSourceFunc func() *inject.Engine

// Engine calls f.
func (f EngineSourceFunc) Engine() *inject.Engine { return f() }

// NativeSidecarPolicy says whether a pod gets a native sidecar (before its
// own sidecar.istio.io/nativeSidecar annotation is applied).
type NativeSidecarPolicy interface {
	NativeSidecars(pod *corev1.Pod) bool
}

// Always is a NativeSidecarPolicy with a fixed answer.
type Always bool

// NativeSidecars returns a.
func (a Always) NativeSidecars(*corev1.Pod) bool { return bool(a) }

// Options configures a Handler.
type Options struct {
	// Engines supplies the engine. Required.
	Engines EngineSource
	// Native decides native sidecars. Default: Always(true).
	Native NativeSidecarPolicy
	// Metrics records injection metrics. Default: none recorded.
	Metrics *metrics
	// Events records an event on the pod's workload for each review that
	// reaches the engine: Injected, NotInjected (skipped) or
	// InjectionDenied. Default: none.
	Events *Events
	// MaxPodBytes is the largest pod, as JSON, that is injected; a larger
	// one is refused before it is decoded, so a review's memory stays
	// bounded (docs/performance.md, "Hostile pods"). Real pods are far
	// smaller: Kubernetes caps a pod's annotations at 256 KiB and etcd
	// stores objects of up to 1.5 MiB. Default DefaultMaxPodBytes
	// (768 KiB).
	MaxPodBytes int
}

// DefaultMaxPodBytes is Options.MaxPodBytes' default.
const DefaultMaxPodBytes = 768 << 10

// Handler injects the pods of admission reviews. It implements
// admission.Handler.
type Handler struct {
	opts Options
}

// NewHandler returns a Handler for opts.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Engines == nil {
		return nil, errors.New("webhook: Options.Engines is required")
	}
	if opts.Native == nil {
		opts.Native = Always(true)
	}
	if opts.MaxPodBytes <= 0 {
		opts.MaxPodBytes = DefaultMaxPodBytes
	}
	return &Handler{opts: opts}, nil
}

// NewWebhook wraps h as a controller-runtime admission webhook that reads
// path parameters (/inject/<key>/<value>/...) into the context and recovers
// panics into a 500 response.
func NewWebhook(h *Handler) *admission.Webhook {
	recoverPanic := true
	return &admission.Webhook{
		Handler:         h,
		RecoverPanic:    &recoverPanic,
		WithContextFunc: func(ctx context.Context, r *http.Request) context.Context { return withPathParams(ctx, r.URL.Path) },
	}
}

// warningPrefix starts every admission warning this webhook returns.
const warningPrefix = "meshinject: "

// Handle injects req's pod.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	log := logf.FromContext(ctx)
	rec := h.opts.Metrics.review(req.Namespace)
	rec.request()
	if resp, done := h.checkRequest(log, rec, req); done {
		return resp
	}
	env, err := pathParams(ctx)
	if err != nil {
		rec.failure("path")
		return admission.Errored(http.StatusBadRequest, err)
	}
	eng := h.opts.Engines.Engine() // the review keeps the engine it started with
	var res inject.Result
	var workload inject.Workload
	current, changed, err := podcodec.RoundTrip(req.Object.Raw, podcodec.Options{}, func(pod *corev1.Pod) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, errExpired{err}
		}
		log = log.WithValues("pod", klog.KRef(req.Namespace, cmp.Or(pod.Name, pod.GenerateName)))
		workload = inject.WorkloadOf(pod)
		// The engine sees the pod without managedFields and with the
		// request's namespace; the pod goes back as the request had them.
		managed, namespace := pod.ManagedFields, pod.Namespace
		pod.ManagedFields = nil
		pod.Namespace = cmp.Or(namespace, req.Namespace)
		res, err = eng.Inject(inject.Request{
			Pod: pod, Namespace: req.Namespace, ProxyEnv: env, NativeSidecars: h.opts.Native.NativeSidecars(pod),
		})
		if err != nil || res.Skipped {
			return false, err
		}
		if err := ctx.Err(); err != nil {
			return false, errExpired{err}
		}
		*pod = *res.Pod
		pod.ManagedFields, pod.Namespace = managed, namespace
		return true, nil
	})
	warnings := prefixed(res.Warnings)
	if err != nil || !changed {
		resp := h.notInjected(req, log, rec, res, warnings, err)
		decision := decisionOf(resp, res, err)
		resp.AuditAnnotations = audit(eng, decision, nil)
		switch decision {
		case decisionDenied:
			h.opts.Events.emit(workload, req.Namespace, corev1.EventTypeWarning, reasonInjectionDenied, resp.Result.Message)
		case decisionError:
		default:
			h.opts.Events.emit(workload, req.Namespace, corev1.EventTypeWarning, reasonNotInjected, "not injected: "+res.Reason)
		}
		return resp
	}
	resp, n, err := patchResponse(req.Object.Raw, current)
	if err != nil {
		rec.failure("internal")
		log.Error(err, "computing the patch failed")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	rec.success(time.Since(start))
	log.V(1).Info("injected", "templates", res.Templates, "patchOperations", n)
	resp.AuditAnnotations = audit(eng, decisionInjected, res.Templates)
	h.opts.Events.emit(workload, req.Namespace, corev1.EventTypeNormal, reasonInjected, fmt.Sprintf("injected revision %s with templates %s (config %s)",
		resp.AuditAnnotations["revision"], resp.AuditAnnotations["templates"], resp.AuditAnnotations["config"]))
	return resp.WithWarnings(warnings...)
}

// audit is a review's audit annotations, which the API server records in
// its audit log under the webhook entry's name (namespace.meshinject.istio.io/decision):
// the decision, the revision, the templates applied and the
// configuration's hash.
func audit(eng *inject.Engine, decision auditDecision, templates []string) map[string]string {
	cfg := eng.Config()
	a := map[string]string{"decision": string(decision), "revision": cfg.RevisionName(), "config": cfg.Hash}
	if len(templates) > 0 {
		a["templates"] = strings.Join(templates, ",")
	}
	return a
}

// auditDecision is the decision audit annotation: what became of a review.
type auditDecision string

// The audit decisions; a skip is decisionSkipped followed by its kind.
const (
	decisionInjected auditDecision = "injected"
	decisionSkipped  auditDecision = "skipped:"
	decisionDenied   auditDecision = "denied"
	decisionError    auditDecision = "error"
)

// decisionOf is the audit decision of a review not injected: skipped:<kind>
// when the engine skipped the pod, denied when it refused it, else error.
func decisionOf(resp admission.Response, res inject.Result, err error) auditDecision {
	switch {
	case err == nil && res.Skipped:
		return decisionSkipped + auditDecision(res.SkipKind)
	case !resp.Allowed && resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return decisionDenied
	}
	return decisionError
}

// errExpired is the review's deadline passing.
type errExpired struct{ error }

// notInjected answers a review whose pod was not injected: skipped, or an
// error of decoding, the deadline, the pod's annotations or our own.
func (h *Handler) notInjected(req admission.Request, log logr.Logger, rec reviewMetrics, res inject.Result, warnings []string, err error) admission.Response {
	var de *podcodec.DecodeError
	var ie *inject.Error
	var expired errExpired
	switch {
	case err == nil:
		return h.skipped(log, rec, res, warnings)
	case errors.As(err, &de):
		rec.failure("decode")
		return admission.Errored(http.StatusBadRequest, describeDecodeError("request.object", req.Object.Raw, new(corev1.Pod), de.Err))
	case errors.As(err, &expired):
		// The API server has given up on the review, so the work stops.
		rec.failure("deadline")
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("the review's deadline passed: %w", expired.error))
	case errors.As(err, &ie):
		rec.failure("invalid_annotation")
		log.Info("injection refused", "field", ie.Field, "reason", ie.Err.Error())
		return admission.Denied(err.Error()).WithWarnings(warnings...)
	}
	rec.failure("internal")
	log.Error(err, "injection failed")
	return admission.Errored(http.StatusInternalServerError, err).WithWarnings(warnings...)
}

// checkRequest answers a request that is not a pod to inject: none, no
// uid, another kind (allowed, with a warning), or a pod over the size
// limit.
func (h *Handler) checkRequest(log logr.Logger, rec reviewMetrics, req admission.Request) (admission.Response, bool) {
	switch {
	case req.UID == "" && req.Kind.Kind == "" && len(req.Object.Raw) == 0:
		rec.failure("decode")
		return admission.Errored(http.StatusBadRequest, errors.New("the AdmissionReview has no request")), true
	case req.UID == "":
		rec.failure("decode")
		return admission.Errored(http.StatusBadRequest, errors.New("request.uid: missing (the API server matches the response to it)")), true
	case req.Kind.Kind != "Pod" || req.Kind.Group != "":
		log.V(1).Info("ignoring a request that is not for a Pod", "kind", req.Kind.String())
		return admission.Allowed("").WithWarnings(fmt.Sprintf("%snot injected: the request is for %s, not a Pod", warningPrefix, req.Kind.Kind)), true
	case len(req.Object.Raw) > h.opts.MaxPodBytes:
		n := len(req.Object.Raw)
		rec.failure("too_large")
		log.Info("injection refused: pod too large", "bytes", n, "limit", h.opts.MaxPodBytes)
		return admission.Denied(fmt.Sprintf("request.object: the pod is %s of JSON; meshinject injects pods of up to %s (serve --max-pod-bytes)",
			sizeText(n), sizeText(h.opts.MaxPodBytes))), true
	}
	return admission.Response{}, false
}

// skipped answers a review whose pod is not injected: allowed, with a
// warning saying why.
func (h *Handler) skipped(log logr.Logger, rec reviewMetrics, res inject.Result, warnings []string) admission.Response {
	rec.skip(res.SkipKind)
	if res.SkipKind == inject.SkipPolicyUnknown {
		log.Error(errors.New(res.Reason), "injection config has an unknown policy; pods are not injected")
	} else {
		log.V(1).Info("not injected", "reason", res.Reason)
	}
	return admission.Allowed("").WithWarnings(append(warnings, warningPrefix+"not injected: "+res.Reason)...)
}

// sizeText writes a byte count for people: 1.3 MiB, 512 KiB, 100 bytes.
func sizeText(n int) string {
	switch {
	case n >= 1<<20:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64), ".0") + " MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

// patchResponse is the allowed response whose JSON patch turns the
// request's pod into current, and the number of operations in it.
func patchResponse(raw, current []byte) (admission.Response, int, error) {
	ops, err := rawpatch.Diff(raw, current)
	if err != nil {
		return admission.Response{}, 0, err
	}
	ops = slices.DeleteFunc(ops, encodingNoop)
	patch, err := rawpatch.Marshal(ops)
	if err != nil {
		return admission.Response{}, 0, err
	}
	resp := admission.Allowed("")
	if len(ops) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp, len(ops), nil
}

// encodingNoop reports whether op only adds what encoding a typed Pod
// writes for a member the request left unset (podcodec.Invented), which
// the API server treats the same as the member being absent.
func encodingNoop(op rawpatch.Operation) bool {
	key := op.Path[strings.LastIndexByte(op.Path, '/')+1:]
	if op.Op != "add" || key == "-" || strings.Trim(key, "0123456789") == "" {
		return false // not a member: an array item
	}
	var v any
	switch string(op.Value) {
	case "null":
	case "{}":
		v = map[string]any{}
	case `"0"`:
		v = "0"
	default:
		return false
	}
	return podcodec.Invented(key, v)
}

func prefixed(ws []string) []string {
	out := make([]string, 0, len(ws)+1)
	for _, w := range ws {
		out = append(out, warningPrefix+w)
	}
	return out
}
