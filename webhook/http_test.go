package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	h, _ := newTestHandler(t, false)
	mux := http.NewServeMux()
	reviews := NewHTTPHandler(NewWebhook(h), HTTPOptions{})
	mux.Handle("/inject", reviews)
	mux.Handle("/inject/", reviews)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func review(apiVersion, kind, object string) string {
	return `{"apiVersion":"admission.k8s.io/` + apiVersion + `","kind":"AdmissionReview","request":{"uid":"u-1",` +
		`"kind":{"group":"","version":"v1","kind":"` + kind + `"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"shop","operation":"CREATE","object":` + object + `}}`
}

const reviewPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"app","image":"a"}]}}`

type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID       string   `json:"uid"`
		Allowed   bool     `json:"allowed"`
		PatchType *string  `json:"patchType"`
		Patch     []byte   `json:"patch"`
		Warnings  []string `json:"warnings"`
		Status    *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

func post(t *testing.T, url, contentType, body string) (int, reviewResponse) {
	t.Helper()
	ctx := t.Context()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var rr reviewResponse
	_ = json.Unmarshal(b, &rr)
	return resp.StatusCode, rr
}

func TestHTTPReviews(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	for _, v := range []string{"v1", "v1beta1"} {
		code, rr := post(t, srv.URL+"/inject", "application/json", review(v, "Pod", reviewPod))
		if code != 200 || rr.APIVersion != "admission.k8s.io/"+v || rr.Kind != "AdmissionReview" {
			t.Fatalf("%s: code %d, apiVersion %q kind %q", v, code, rr.APIVersion, rr.Kind)
		}
		if rr.Response.UID != "u-1" || !rr.Response.Allowed || rr.Response.PatchType == nil || !bytes.Contains(rr.Response.Patch, []byte("istio-proxy")) {
			t.Errorf("%s: response %+v", v, rr.Response)
		}
	}
}

func TestHTTPEdges(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	tests := map[string]struct {
		contentType, body string
		wantAllowed       bool
		wantCode          int // HTTP status, or the review's status code when 200
		warning           string
	}{
		"empty body":         {contentType: "application/json", body: "", wantCode: 400},
		"wrong content type": {contentType: "text/plain", body: review("v1", "Pod", reviewPod), wantCode: 400},
		"undecodable json":   {contentType: "application/json", body: `{"apiVersion":`, wantCode: 400},
		"not a review":       {contentType: "application/json", body: `{"apiVersion":"v1","kind":"Pod"}`, wantCode: 400},
		"pod not decodable":  {contentType: "application/json", body: review("v1", "Pod", `{"spec":{"containers":7}}`), wantCode: 400},
		"wrong kind":         {contentType: "application/json", body: review("v1", "Service", `{"apiVersion":"v1","kind":"Service"}`), wantAllowed: true, warning: "not a Pod"},
		"oversized":          {contentType: "application/json", body: review("v1", "Pod", `{"metadata":{"annotations":{"big":"`+strings.Repeat("x", 8<<20)+`"}}}`), wantCode: 413},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, rr := post(t, srv.URL+"/inject", tc.contentType, tc.body)
			if code != 200 {
				if tc.wantCode != code {
					t.Errorf("HTTP %d, want %d", code, tc.wantCode)
				}
				return
			}
			if rr.Response.Allowed != tc.wantAllowed {
				t.Errorf("allowed = %v, want %v (%+v)", rr.Response.Allowed, tc.wantAllowed, rr.Response.Status)
			}
			if !tc.wantAllowed && (rr.Response.Status == nil || rr.Response.Status.Code != tc.wantCode) {
				t.Errorf("status %+v, want code %d", rr.Response.Status, tc.wantCode)
			}
			if tc.warning != "" && (len(rr.Response.Warnings) == 0 || !strings.Contains(rr.Response.Warnings[0], tc.warning)) {
				t.Errorf("warnings %q, want %q", rr.Response.Warnings, tc.warning)
			}
		})
	}
}

// TestHTTPAfterRefusedBodies: a review sent after an oversized or an
// undecodable one, over the same keep-alive client, is answered; no unread
// rest of a body is ever parsed as the next request.
func TestHTTPAfterRefusedBodies(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	for name, tc := range map[string]struct {
		body string
		code int
	}{
		"oversized":   {review("v1", "Pod", `{"metadata":{"annotations":{"big":"`+strings.Repeat("x", 8<<20)+`"}}}`), 413},
		"undecodable": {`{"apiVersion":`, 400},
		"YAML":        {"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n", 400},
	} {
		for range 2 {
			if code, rr := post(t, srv.URL+"/inject", "application/json", tc.body); code != 200 || rr.Response.Status == nil || rr.Response.Status.Code != tc.code {
				t.Fatalf("%s: HTTP %d, %+v", name, code, rr.Response)
			}
			if code, rr := post(t, srv.URL+"/inject", "application/json", review("v1", "Pod", reviewPod)); code != 200 || !rr.Response.Allowed {
				t.Fatalf("after %s: HTTP %d, %+v", name, code, rr.Response)
			}
		}
	}
}

// TestHTTPConcurrent sends reviews from several goroutines at once.
func TestHTTPConcurrent(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				code, rr := post(t, srv.URL+"/inject/cluster/c1", "application/json", review("v1", "Pod", reviewPod))
				if code != 200 || !rr.Response.Allowed || len(rr.Response.Patch) == 0 {
					errs <- "bad response"
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
