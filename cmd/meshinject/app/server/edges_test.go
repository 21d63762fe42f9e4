package server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/meshinject/meshinject/test/testutil"
)

// TestEdgesLoggedAndCounted sends the webhook what is not a review: a
// failed TLS handshake is a structured log entry (not net/http's own
// line), and a GET, a body that is not JSON and an empty review are each
// logged and counted by reason. It is not parallel: it reads the standard
// logger, which the server takes over.
func TestEdgesLoggedAndCounted(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, prefix+" "+args)
	}, funcr.Options{})
	metricsAddr := "127.0.0.1:" + fmt.Sprint(testutil.FreePort(t))
	url, _, ca := startServer(t, t.TempDir(), Options{Log: log, MetricsAddr: metricsAddr})

	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "https://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(conn)
	_ = conn.Close()

	c := client(ca, false)
	send := func(method, contentType, body string) {
		req, err := http.NewRequest(method, url+"/inject", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	send(http.MethodGet, "application/json", "")
	send(http.MethodPost, "text/plain", "hello")
	send(http.MethodPost, "application/json", "{}")

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		all := strings.Join(logged, "\n")
		mu.Unlock()
		handshake := strings.Contains(all, `net/http "level"=0 "msg"="http: TLS handshake error`)
		refusals := strings.Contains(all, `"reason"="method"`) && strings.Contains(all, `"reason"="not_a_review"`)
		if handshake && refusals {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: TLS handshake error logged through the structured logger %v, refusals logged by reason %v:\n%s", handshake, refusals, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, reason := range []string{"method", "content_type", "not_a_review"} {
		if !bytes.Contains(b, []byte(`meshinject_review_refusals_total{reason="`+reason+`"} 1`)) {
			t.Errorf("/metrics does not count one %s refusal", reason)
		}
	}
}
