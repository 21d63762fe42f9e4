package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/randfill"
)

// recorder is an admission.Webhook whose handler keeps the last request it
// was given.
func recorder() (*admission.Webhook, *admission.Request) {
	var got admission.Request
	return &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		got = req
		return admission.Allowed("")
	})}, &got
}

// serve posts body to h and returns the HTTP status and the response body.
func serve(h http.Handler, path, contentType string, body io.Reader) (int, []byte) {
	req := httptest.NewRequest(http.MethodPost, path, body)
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// randomReviews returns n AdmissionReviews, alternately v1 and v1beta1,
// whose requests have random values in every field, encoded as an API
// server encodes them.
func randomReviews(t *testing.T, n int) [][]byte {
	t.Helper()
	f := randfill.NewWithSeed(1).NilChance(0.2).NumElements(0, 3).Funcs(
		func(re *runtime.RawExtension, c randfill.Continue) {
			if c.Bool() {
				re.Raw, _ = json.Marshal(map[string]any{"n": c.Int63(), "s": c.String(12), "b": []bool{c.Bool()}})
			}
		},
	)
	out := make([][]byte, n)
	for i := range out {
		var req admissionv1.AdmissionRequest
		f.Fill(&req)
		ar := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: []string{reviewV1, reviewV1beta1}[i%2], Kind: reviewKind}, Request: &req}
		b, err := json.Marshal(&ar)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// TestDecodeReviewMatchesController: every review the fast path decodes is
// the request controller-runtime's decoder hands the handler, for reviews
// with random values in every field of the request.
func TestDecodeReviewMatchesController(t *testing.T) {
	t.Parallel()
	wh, recorded := recorder()
	bodies := randomReviews(t, 300)
	bodies = append(bodies, []byte(review("v1", "Pod", reviewPod)), []byte(review("v1beta1", "Pod", reviewPod)),
		[]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","futureField":{"a":[1]},"request":{"uid":"u","futureField":2,"object":{"x":1}}}`))
	// Repeated names: the last wins on both paths, and objects merge.
	good := review("v1", "Pod", reviewPod)
	for _, dup := range []string{
		strings.Replace(good, `"uid":"u-1"`, `"uid":"u-1","uid":"u-2"`, 1),
		strings.Replace(good, `"namespace":"shop"`, `"namespace":"a","namespace":"shop","userInfo":{"username":"x","groups":["g"]},"userInfo":{"username":"y"}`, 1),
		strings.Replace(good, `"object":`, `"object":{"a":1},"object":`, 1),
		strings.Replace(good, `"request":{`, `"request":{"uid":"u-0","dryRun":true},"request":{`, 1),
		strings.Replace(good, `"kind":{"group":"","version":"v1","kind":"Pod"}`, `"kind":{"group":"apps","version":"v9"},"kind":{"group":"","version":"v1","kind":"Pod"}`, 1),
		strings.Replace(good, `"apiVersion":"admission.k8s.io/v1"`, `"apiVersion":"x","apiVersion":"admission.k8s.io/v1"`, 1),
	} {
		bodies = append(bodies, []byte(dup))
	}
	for i, body := range bodies {
		got, apiVersion, ok := decodeReview(body)
		if !ok {
			t.Fatalf("review %d: the fast path refused it:\n%s", i, body)
		}
		*recorded = admission.Request{}
		if code, out := serve(wh, "/inject", "application/json", bytes.NewReader(body)); code != http.StatusOK {
			t.Fatalf("review %d: controller-runtime answered %d: %s", i, code, out)
		}
		if d := cmp.Diff(*recorded, got); d != "" {
			t.Fatalf("review %d: requests differ (-controller-runtime +fast path):\n%s", i, d)
		}
		if want := []string{reviewV1, reviewV1beta1}[i%2]; i < 300 && apiVersion != want {
			t.Fatalf("review %d: apiVersion %q, want %q", i, apiVersion, want)
		}
	}
}

// TestDecodeReviewOwnsItsBytes: the decoded request shares no memory with
// the body, whose buffer is reused for the next review.
func TestDecodeReviewOwnsItsBytes(t *testing.T) {
	t.Parallel()
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","namespace":"shop",` +
		`"userInfo":{"username":"alice","extra":{"k":["v"]}},"object":{"metadata":{"name":"web"}},"oldObject":{"a":1},"options":{"b":2}}}`)
	want, _, ok := decodeReview(bytes.Clone(body))
	if !ok {
		t.Fatal("the fast path refused the review")
	}
	got, _, ok := decodeReview(body)
	if !ok {
		t.Fatal("the fast path refused the review")
	}
	for i := range body {
		body[i] = 'x'
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("the request changed with the body (-want +got):\n%s", d)
	}
}

// TestReviewRefusedBodies: what the fast path does not decode goes to
// controller-runtime, and the answer is controller-runtime's, byte for
// byte; a body that is not JSON, or whose request has a member of the wrong
// kind, is refused with a message naming the field instead.
func TestReviewRefusedBodies(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	wh := NewWebhook(h)
	fast := NewHTTPHandler(wh, HTTPOptions{})
	good := review("v1", "Pod", reviewPod)
	for name, body := range map[string]string{
		"mis-cased name": strings.Replace(good, `"request"`, `"Request"`, 1),
		"invalid UTF-8":  strings.Replace(good, `"shop"`, "\"sh\xffop\"", 1),
		"no request":     `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"null request":   `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, _, ok := decodeReview([]byte(body)); ok {
				t.Fatal("the fast path decoded it")
			}
			wantCode, want := serve(wh, "/inject", "application/json", strings.NewReader(body))
			gotCode, got := serve(fast, "/inject", "application/json", strings.NewReader(body))
			if gotCode != wantCode || !bytes.Equal(got, want) {
				t.Errorf("got %d %s\nwant %d %s", gotCode, got, wantCode, want)
			}
		})
	}

	for name, tc := range map[string]struct{ body, message string }{
		"trailing data":  {good + `{}`, "the body is not a JSON AdmissionReview: jsontext: invalid character '{' after top-level value"},
		"YAML":           {"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n", "the body is not a JSON AdmissionReview: jsontext: invalid character 'a' at start of value"},
		"truncated":      {good[:len(good)/2], "the body is not a JSON AdmissionReview: jsontext: unexpected EOF"},
		"empty":          {"", "the body is empty: want a JSON AdmissionReview"},
		"request string": {`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`, "request: want an object, got a string"},
		"uid number":     {strings.Replace(good, `"uid":"u-1"`, `"uid":1`, 1), "request.uid: want a string, got a number"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, got := serve(fast, "/inject", "application/json", strings.NewReader(tc.body))
			var rv struct {
				Response struct {
					Status struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"status"`
				} `json:"response"`
			}
			if err := json.Unmarshal(got, &rv); err != nil || code != 200 || rv.Response.Status.Code != 400 {
				t.Fatalf("got %d %s, want a 400 review response", code, got)
			}
			if !strings.HasPrefix(rv.Response.Status.Message, tc.message) {
				t.Errorf("message %q, want %q", rv.Response.Status.Message, tc.message)
			}
		})
	}
}

// TestReviewWrongTypeOrMethod: a review of another apiVersion or kind, or
// without them, or sent with another method than POST, is refused with 400
// and a message naming what it was (controller-runtime's decoder would
// take the body as a review and inject it).
func TestReviewWrongTypeOrMethod(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	fast := NewHTTPHandler(NewWebhook(h), HTTPOptions{})
	good := review("v1", "Pod", reviewPod)
	for name, tc := range map[string]struct{ method, body, want string }{
		"unknown apiVersion": {http.MethodPost, strings.Replace(good, "admission.k8s.io/v1", "admission.k8s.io/v2", 1), `apiVersion \"admission.k8s.io/v2\"`},
		"other kind":         {http.MethodPost, strings.Replace(good, `"kind":"AdmissionReview"`, `"kind":"AdmissionReviewList"`, 1), `kind \"AdmissionReviewList\"`},
		"no apiVersion":      {http.MethodPost, strings.Replace(good, `"apiVersion":"admission.k8s.io/v1",`, ``, 1), `apiVersion \"\"`},
		"no kind":            {http.MethodPost, strings.Replace(good, `"kind":"AdmissionReview",`, ``, 1), `kind \"\"`},
		"PUT":                {http.MethodPut, good, "method PUT"},
		"GET":                {http.MethodGet, "", "method GET"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tc.method, "/inject", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			fast.ServeHTTP(w, r)
			body := w.Body.String()
			if strings.Contains(body, `"patch"`) || !strings.Contains(body, `"code":400`) || !strings.Contains(body, tc.want) {
				t.Errorf("got %d %s, want a 400 review naming %s and no patch", w.Code, body, tc.want)
			}
		})
	}
}

// TestReviewResponsesMatchController: for reviews the fast path decodes,
// the response is the one controller-runtime writes, byte for byte, for
// each kind of answer.
func TestReviewResponsesMatchController(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	wh := NewWebhook(h)
	fast := NewHTTPHandler(wh, HTTPOptions{})
	for name, tc := range map[string]struct{ path, body string }{
		"inject v1":       {"/inject", review("v1", "Pod", reviewPod)},
		"inject v1beta1":  {"/inject", review("v1beta1", "Pod", reviewPod)},
		"path parameters": {"/inject/cluster/c1/net/n1", review("v1", "Pod", reviewPod)},
		"bad path":        {"/inject/cluster", review("v1", "Pod", reviewPod)},
		"skip":            {"/inject", review("v1", "Pod", `{"metadata":{"name":"h"},"spec":{"hostNetwork":true,"containers":[{"name":"a"}]}}`)},
		"denied":          {"/inject", review("v1", "Pod", `{"metadata":{"name":"d","annotations":{"sidecar.istio.io/proxyCPU":"lots"}},"spec":{"containers":[{"name":"a"}]}}`)},
		"undecodable pod": {"/inject", review("v1", "Pod", `{"spec":{"containers":7}}`)},
		"not a pod":       {"/inject", review("v1", "Service", `{"apiVersion":"v1","kind":"Service"}`)},
		"unknown field":   {"/inject", review("v1", "Pod", `{"metadata":{"name":"u"},"spec":{"futureField":{"a":1},"containers":[{"name":"a","futureField":"<&>"}]}}`)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, _, ok := decodeReview([]byte(tc.body)); !ok {
				t.Fatal("the fast path refused it")
			}
			wantCode, want := serve(wh, tc.path, "application/json", strings.NewReader(tc.body))
			gotCode, got := serve(fast, tc.path, "application/json", strings.NewReader(tc.body))
			if gotCode != wantCode || !bytes.Equal(got, want) {
				t.Errorf("got %d %s\nwant %d %s", gotCode, got, wantCode, want)
			}
		})
	}
}

// failAfter yields data, then err.
type failAfter struct {
	data []byte
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// TestReviewBodyLimits: an oversized body, a body that fails to read and a
// wrong content type get controller-runtime's answers.
func TestReviewBodyLimits(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, true)
	wh := NewWebhook(h)
	fast := NewHTTPHandler(wh, HTTPOptions{})
	big := review("v1", "Pod", `{"metadata":{"annotations":{"big":"`+strings.Repeat("x", maxReviewBytes)+`"}}}`)
	readErr := errors.New("connection reset")
	for name, tc := range map[string]struct {
		contentType string
		body        func() io.Reader
		wantCode    int
		wantText    string
	}{
		"oversized":          {"application/json", func() io.Reader { return strings.NewReader(big) }, http.StatusRequestEntityTooLarge, "too large"},
		"read error":         {"application/json", func() io.Reader { return &failAfter{data: []byte(big[:1000]), err: readErr} }, http.StatusBadRequest, readErr.Error()},
		"wrong content type": {"text/plain", func() io.Reader { return strings.NewReader(review("v1", "Pod", reviewPod)) }, http.StatusBadRequest, "contentType=text/plain"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			wantCode, want := serve(wh, "/inject", tc.contentType, tc.body())
			gotCode, got := serve(fast, "/inject", tc.contentType, tc.body())
			if gotCode != wantCode || !bytes.Equal(got, want) {
				t.Errorf("got %d %s\nwant %d %s", gotCode, got, wantCode, want)
			}
			var rr reviewResponse
			if err := json.Unmarshal(got, &rr); err != nil || rr.Response.Status == nil ||
				rr.Response.Status.Code != tc.wantCode || !strings.Contains(rr.Response.Status.Message, tc.wantText) {
				t.Errorf("response %s: want code %d and %q", got, tc.wantCode, tc.wantText)
			}
		})
	}
}

// FuzzDecodeReview: whatever the fast path decodes, controller-runtime
// decodes to the same request.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(review("v1", "Pod", reviewPod)))
	f.Add([]byte(review("v1beta1", "Service", `{"a":[1,2,{"b":null}]}`)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\u00e9","userInfo":{"extra":{"k":["v"]}},"dryRun":true}}`))
	wh, recorded := recorder()
	f.Fuzz(func(t *testing.T, body []byte) {
		got, _, ok := decodeReview(body)
		if !ok {
			return
		}
		*recorded = admission.Request{}
		if code, out := serve(wh, "/inject", "application/json", bytes.NewReader(body)); code != http.StatusOK {
			t.Fatalf("the fast path decoded what controller-runtime refuses (%d %s)", code, out)
		}
		if d := cmp.Diff(*recorded, got); d != "" {
			t.Fatalf("requests differ (-controller-runtime +fast path):\n%s", d)
		}
	})
}
