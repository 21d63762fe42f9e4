package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshinject/meshinject/internal/promreg"
)

// maxReviewBytes caps a review's body, as controller-runtime does: two
// objects of at most 3 MiB each and 1 MiB for the rest.
const maxReviewBytes = 7 << 20

// NewHTTPHandler serves AdmissionReviews over HTTP for wh.
//
// controller-runtime's Webhook.ServeHTTP decodes every review through the
// runtime scheme's universal deserializer, which scans the whole body twice
// (once for its type, once to decode it). Speed code (its figure:
// docs/performance.md, "Speed code"): the handler returned here decodes
// the usual review itself, in one scan with encoding/json/v2: a body of
// type application/json within the size limit whose apiVersion is
// admission.k8s.io/v1 or v1beta1, whose kind is AdmissionReview, that has a
// request, and that decodes with names matched case-sensitively and valid
// UTF-8 (so it decodes to the request controller-runtime's decoder returns:
// TestDecodeReviewMatchesController). A repeated name is taken as
// controller-runtime takes it (the last wins, objects merge) rather than
// checked: the check keeps a set of every name in the body, 200 bytes per
// member of a hostile pod's labels.
// It then calls wh.Handle, so the panic recovery, the request logger and the
// response completion are the Webhook's, and writes the response
// controller-runtime writes, byte for byte, in one write with a
// Content-Length. Every other body, including every malformed one, goes to
// wh.ServeHTTP, so errors and their wording are controller-runtime's; an
// oversized or unreadable body is answered here as controller-runtime
// answers it, leaving the request's body to net/http, which then closes the
// connection rather than read the rest.
//
// Each review runs under a deadline: the API server's timeout query
// parameter (it sends the webhook's timeoutSeconds), else
// opts.DefaultReviewTimeout; and its body must arrive within
// opts.BodyReadTimeout.
func NewHTTPHandler(wh *admission.Webhook, opts HTTPOptions) http.Handler {
	opts.setDefaults()
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshinject_review_refusals_total",
		Help: "Requests to the webhook answered without reaching the handler, by reason: method, empty_body, content_type, read, too_large, not_a_review, overloaded.",
	}, []string{"reason"})
	if opts.Registerer != nil {
		_ = promreg.Register(opts.Registerer, &refusals) // an equal collector registered before is shared
	}
	return &reviewServer{wh: wh, log: opts.Log, opts: opts, inFlight: semaphore.NewWeighted(opts.InFlightBytes), refusals: refusals}
}

// HTTPOptions configures NewHTTPHandler.
type HTTPOptions struct {
	// BodyReadTimeout bounds reading a review's body: a client that has not
	// sent all of it by then is answered 400 and its connection closed.
	// Default 5s.
	BodyReadTimeout time.Duration
	// DefaultReviewTimeout is a review's deadline when the request has no
	// timeout query parameter. Default 10s, the API server's default
	// timeoutSeconds.
	DefaultReviewTimeout time.Duration
	// InFlightBytes bounds the bytes of review bodies being worked on at
	// once (a body counts its Content-Length, at most this; one without a
	// length counts all of it). A review beyond it waits, within its
	// deadline, for others to finish. The default keeps the work in
	// flight, and so the heap, under about 64 MiB however many hostile pods
	// arrive together (docs/performance.md, "Hostile pods"); ordinary
	// reviews of a few KiB are not held back. Default 1 MiB.
	InFlightBytes int64
	// Log logs the requests refused before the handler. Default:
	// controller-runtime's logger, named admission.
	Log logr.Logger
	// Registerer registers meshinject_review_refusals_total, the requests
	// answered without reaching the handler by reason. Default: none (the
	// counter is not exported).
	Registerer prometheus.Registerer
}

func (o *HTTPOptions) setDefaults() {
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = 5 * time.Second
	}
	if o.DefaultReviewTimeout <= 0 {
		o.DefaultReviewTimeout = 10 * time.Second
	}
	if o.InFlightBytes <= 0 {
		o.InFlightBytes = 1 << 20
	}
	if o.Log.GetSink() == nil {
		o.Log = logf.Log.WithName("admission")
	}
}

type reviewServer struct {
	wh       *admission.Webhook
	log      logr.Logger
	opts     HTTPOptions
	inFlight *semaphore.Weighted
	refusals *prometheus.CounterVec
}

// refuse answers a request that reaches no handler, logging and counting
// it by reason.
func (s *reviewServer) refuse(w http.ResponseWriter, reason string, resp admission.Response) {
	s.refusals.WithLabelValues(reason).Inc()
	msg := resp.Result.Message
	if len(msg) > maxLoggedMessage {
		// A hostile body can put megabytes in a quoted apiVersion.
		msg = strings.ToValidUTF8(msg[:maxLoggedMessage], "") + "…"
	}
	s.log.Info("request refused", "reason", reason, "code", resp.Result.Code, "message", msg)
	s.write(w, "", resp)
}

// maxLoggedMessage bounds the refusal message a log line carries.
const maxLoggedMessage = 256

// weight is what a review of a body of length n (-1: unknown) counts
// against the in-flight budget.
func (s *reviewServer) weight(n int64) int64 {
	if n < 0 || n > s.opts.InFlightBytes {
		return s.opts.InFlightBytes
	}
	return max(n, 1)
}

// reviewDeadline is the review's timeout from the API server's timeout
// query parameter (e.g. "10s"), else def.
func reviewDeadline(r *http.Request, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && d > 0 {
		return d
	}
	return def
}

// bodyPool keeps request and response buffers between reviews; buffers
// over maxPooledBuffer are left to the garbage collector.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuffer = 1 << 20

func getBuffer() *bytes.Buffer { return bodyPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		b.Reset()
		bodyPool.Put(b)
	}
}

func (s *reviewServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuse(w, "method", admission.Errored(http.StatusBadRequest, fmt.Errorf("method %s: an AdmissionReview is sent with POST", r.Method)))
		return
	}
	// A body that trickles in is cut off; net/http then closes the
	// connection rather than read the rest.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyReadTimeout))
	ctx, cancel := context.WithTimeout(r.Context(), reviewDeadline(r, s.opts.DefaultReviewTimeout))
	defer cancel()
	r = r.WithContext(ctx)
	weight := s.weight(r.ContentLength)
	if err := s.inFlight.Acquire(ctx, weight); err != nil {
		s.log.Info("review dropped: its deadline passed while large reviews in flight held the budget", "bodyBytes", r.ContentLength, "inFlightBytes", s.opts.InFlightBytes)
		s.refuse(w, "overloaded", admission.Errored(http.StatusServiceUnavailable,
			fmt.Errorf("the review's deadline passed while it waited for large reviews in flight to finish: %w", err)))
		return
	}
	defer s.inFlight.Release(weight)
	if r.Body == nil || r.Body == http.NoBody || r.Header.Get("Content-Type") != "application/json" {
		// controller-runtime's Webhook refuses these, with its own message
		// and log line; they are counted here.
		reason := "content_type"
		if r.Body == nil || r.Body == http.NoBody {
			reason = "empty_body"
		}
		s.refusals.WithLabelValues(reason).Inc()
		s.wh.ServeHTTP(w, r)
		return
	}
	body := getBuffer()
	defer putBuffer(body)
	if n := r.ContentLength; n > 0 && n <= maxReviewBytes {
		body.Grow(int(n) + bytes.MinRead)
	}
	if _, err := body.ReadFrom(io.LimitReader(r.Body, maxReviewBytes)); err != nil {
		s.refuse(w, "read", admission.Errored(http.StatusBadRequest, err))
		return
	}
	if body.Len() >= maxReviewBytes {
		err := fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewBytes)
		s.refuse(w, "too_large", admission.Errored(http.StatusRequestEntityTooLarge, err))
		return
	}
	_ = r.Body.Close()
	req, apiVersion, ok := decodeReview(body.Bytes())
	if !ok {
		if err := checkReview(body.Bytes()); err != nil {
			s.refuse(w, "not_a_review", admission.Errored(http.StatusBadRequest, err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body.Bytes()))
		s.wh.ServeHTTP(w, r)
		return
	}
	if s.wh.WithContextFunc != nil {
		ctx = s.wh.WithContextFunc(ctx, r)
	}
	s.write(w, apiVersion, s.wh.Handle(ctx, req))
}

// write sends resp in an AdmissionReview of apiVersion (none for a
// response that answers no decoded review), as controller-runtime does.
func (s *reviewServer) write(w http.ResponseWriter, apiVersion string, resp admission.Response) {
	out := getBuffer()
	defer putBuffer(out)
	out.Grow(base64.StdEncoding.EncodedLen(len(resp.Patch)) + 1024) // one allocation for a large patch
	if err := encodeReview(out, apiVersion, &resp.AdmissionResponse); err != nil {
		s.log.Error(err, "unable to encode the response")
		out.Reset()
		failed := admission.Errored(http.StatusInternalServerError, err)
		failed.UID = resp.UID
		if err := encodeReview(out, "", &failed.AdmissionResponse); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	_, _ = w.Write(out.Bytes())
}

// reviewBody is the part of an AdmissionReview the fast path reads.
type reviewBody struct {
	APIVersion string                        `json:"apiVersion"`
	Kind       string                        `json:"kind"`
	Request    *admissionv1.AdmissionRequest `json:"request"`
}

const (
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
	reviewKind    = "AdmissionReview"
)

// decodeReview decodes body as the fast path accepts it (see
// NewHTTPHandler) and returns the request and the review's apiVersion, or
// ok false for a body to leave to controller-runtime.
func decodeReview(body []byte) (req admission.Request, apiVersion string, ok bool) {
	var rv reviewBody
	if jsonv2.Unmarshal(body, &rv, jsontext.AllowDuplicateNames(true)) != nil || rv.Request == nil || rv.Kind != reviewKind {
		return admission.Request{}, "", false
	}
	if rv.APIVersion != reviewV1 && rv.APIVersion != reviewV1beta1 {
		return admission.Request{}, "", false
	}
	return admission.Request{AdmissionRequest: *rv.Request}, rv.APIVersion, true
}

// checkReview refuses a body that is not JSON, or whose request has a
// member of the wrong kind, with a message naming the field, then checks
// its type (checkReviewType). Anything else the fast path refused goes to
// controller-runtime.
func checkReview(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("the body is empty: want a JSON AdmissionReview")
	}
	if !jsontext.Value(body).IsValid(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) {
		err := jsonv2.Unmarshal(body, new(jsontext.Value), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
		return fmt.Errorf("the body is not a JSON AdmissionReview: %w", err)
	}
	var se *jsonv2.SemanticError
	if err := jsonv2.Unmarshal(body, new(reviewBody)); errors.As(err, &se) && se.JSONKind != 0 && se.GoType != nil && !wantsKind(se.GoType, se.JSONKind) {
		return describeDecodeError("", body, new(reviewBody), err)
	}
	return checkReviewType(body)
}

// checkReviewType refuses a JSON body that names another type than an
// AdmissionReview of admission.k8s.io/v1 or v1beta1 (or none), which
// controller-runtime's decoder would otherwise take as one. Names match
// case-insensitively here, as that decoder matches them; a body that is
// not JSON is left to it.
func checkReviewType(body []byte) error {
	var tm struct {
		APIVersion *string `json:"apiVersion"`
		Kind       *string `json:"kind"`
	}
	if json.Unmarshal(body, &tm) != nil {
		return nil
	}
	apiVersion, kind := "", ""
	if tm.APIVersion != nil {
		apiVersion = *tm.APIVersion
	}
	if tm.Kind != nil {
		kind = *tm.Kind
	}
	if (apiVersion == reviewV1 || apiVersion == reviewV1beta1) && kind == reviewKind {
		return nil
	}
	return fmt.Errorf("apiVersion %q, kind %q: want kind %s of %s or %s", apiVersion, kind, reviewKind, reviewV1, reviewV1beta1)
}

// encodeReview writes the AdmissionReview controller-runtime writes for
// resp: encoding/json's encoding, newline-terminated, apiVersion echoing
// the request's (none for a response that answers no decoded review).
func encodeReview(out *bytes.Buffer, apiVersion string, resp *admissionv1.AdmissionResponse) error {
	ar := admissionv1.AdmissionReview{Response: resp}
	if apiVersion != "" {
		ar.TypeMeta = metav1.TypeMeta{APIVersion: apiVersion, Kind: reviewKind}
	}
	return json.NewEncoder(out).Encode(&ar)
}
