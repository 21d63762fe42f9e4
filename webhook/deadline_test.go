package webhook

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
