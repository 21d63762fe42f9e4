package webhook

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshinject/meshinject/test/testutil"
)

// TestBodyReadDeadline: a client that sends headers and part of a body,
// then stalls, is answered 400 once the body read timeout passes, not
// held open.
func TestBodyReadDeadline(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, false)
	srv := httptest.NewServer(NewHTTPHandler(NewWebhook(h), HTTPOptions{BodyReadTimeout: 200 * time.Millisecond}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	fmt.Fprintf(conn, "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\":")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("answered after %v, want about the 200ms body timeout", took)
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	if !strings.Contains(b.String(), `"code":400`) {
		t.Errorf("got %s, want a 400 review", b.String())
	}
}

// TestReviewDeadline: a review whose deadline (the API server's timeout
// query parameter) has passed stops without a patch.
func TestReviewDeadline(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, false)
	fast := NewHTTPHandler(NewWebhook(h), HTTPOptions{})
	for _, timeout := range []string{"1ns", ""} {
		r := httptest.NewRequest(http.MethodPost, "/inject?timeout="+timeout, strings.NewReader(review("v1", "Pod", reviewPod)))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		fast.ServeHTTP(w, r)
		expired := strings.Contains(w.Body.String(), "deadline passed")
		patched := strings.Contains(w.Body.String(), `"patch"`)
		if timeout == "1ns" && (!expired || patched) {
			t.Errorf("timeout %s: got %s, want the deadline refusal and no patch", timeout, w.Body.String())
		}
		if timeout == "" && (expired || !patched) {
			t.Errorf("no timeout: got %s, want a patch within the default 10s", w.Body.String())
		}
	}
}

// gate is an admission handler that counts the reviews inside it and
// holds each until released.
type gate struct {
	inside, most atomic.Int64
	release      chan struct{}
}

func (g *gate) Handle(context.Context, admission.Request) admission.Response {
	n := g.inside.Add(1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	<-g.release
	g.inside.Add(-1)
	return admission.Allowed("")
}

// TestInFlightBytes: reviews whose bodies together pass the in-flight
// budget run one after another, small ones side by side, and a review that
// cannot start before its deadline is answered 503 saying why.
func TestInFlightBytes(t *testing.T) {
	t.Parallel()
	body := review("v1", "Pod", reviewPod)
	for _, tc := range []struct {
		name   string
		budget int64
		want   int64
	}{{"large", int64(len(body)), 1}, {"small", int64(4 * len(body)), 4}} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gate{release: make(chan struct{})}
			srv := NewHTTPHandler(&admission.Webhook{Handler: g}, HTTPOptions{InFlightBytes: tc.budget})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					r := httptest.NewRequest(http.MethodPost, "/inject", strings.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					srv.ServeHTTP(httptest.NewRecorder(), r)
				})
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return g.inside.Load() == min(tc.want, 4) })
			time.Sleep(100 * time.Millisecond) // let any review that should wait fail to enter
			if got := g.most.Load(); got != tc.want {
				t.Errorf("%d reviews in flight at once with a budget of %d bytes for %d-byte bodies, want %d", got, tc.budget, len(body), tc.want)
			}
			close(g.release)
			wg.Wait()
		})
	}
	t.Run("deadline", func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		srv := NewHTTPHandler(&admission.Webhook{Handler: g}, HTTPOptions{InFlightBytes: 1})
		first := make(chan struct{})
		go func() {
			defer close(first)
			r := httptest.NewRequest(http.MethodPost, "/inject", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			srv.ServeHTTP(httptest.NewRecorder(), r)
		}()
		testutil.Eventually(t, 10*time.Second, func() bool { return g.inside.Load() == 1 })
		r := httptest.NewRequest(http.MethodPost, "/inject?timeout=100ms", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		second := make(chan struct{})
		go func() { defer close(second); srv.ServeHTTP(w, r) }()
		select {
		case <-second:
			if !strings.Contains(w.Body.String(), `"code":503`) || !strings.Contains(w.Body.String(), "waited for large reviews in flight") {
				t.Errorf("got %s, want a 503 saying the review waited past its deadline", w.Body.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("the second review was not answered within 10s of its 100ms deadline")
		}
		close(g.release)
		<-first
		<-second
	})
}
