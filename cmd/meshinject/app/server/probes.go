package server

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// probes are the checks of /healthz and /readyz, served on the health
// address by controller-runtime's healthz handlers (also /readyz/<check>).
// The manager's own health probe server is not used: its verbose /readyz
// ends "healthz check passed"; this one says readyz.
type probes struct {
	live, ready map[string]healthz.Checker
}

func newProbes() *probes {
	return &probes{live: map[string]healthz.Checker{"ping": healthz.Ping}, ready: map[string]healthz.Checker{}}
}

// server listens on addr now and returns the runnable that serves the
// probes there until the manager stops, then shuts down within timeout.
func (p *probes) server(addr string, timeout *time.Duration) (*manager.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health address: listen on %s: %w (move it with --health-addr)", addr, err)
	}
	mux := http.NewServeMux()
	live := http.StripPrefix("/healthz", &healthz.Handler{Checks: p.live})
	ready := renamed("readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: p.ready}))
	mux.Handle("/healthz", live)
	mux.Handle("/healthz/", live)
	mux.Handle("/readyz", ready)
	mux.Handle("/readyz/", ready)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return &manager.Server{Name: "health probe", Server: srv, Listener: ln, ShutdownTimeout: timeout}, nil
}

// renamed serves h with "healthz check" in its text answer replaced by
// name's.
func renamed(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
		h.ServeHTTP(b, r)
		for k, v := range b.header {
			w.Header()[k] = v
		}
		body := strings.ReplaceAll(b.body.String(), "healthz check", name+" check")
		w.Header().Del("Content-Length")
		w.WriteHeader(b.code)
		_, _ = w.Write([]byte(body))
	})
}

// bufferedResponse holds a handler's answer for renamed.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }
