package server

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// drainer delays the webhook's shutdown so no review is lost: when the
// process is told to stop, readiness fails (the Service stops sending new
// connections) and every response asks its client to close the connection
// (keep-alive connections are re-dialled to another replica) for the
// delay; then the webhook stops accepting and finishes its in-flight
// reviews.
type drainer struct {
	delay    time.Duration
	draining atomic.Bool
}

// errDraining is readiness while draining.
var errDraining = errors.New("shutting down: draining connections")

// run waits for ctx to end, drains for the delay, then calls stop. A
// webhook that never served (started reports false) is not drained.
func (d *drainer) run(ctx context.Context, stop context.CancelFunc, started func() bool, log logr.Logger) {
	defer stop()
	<-ctx.Done()
	d.draining.Store(true)
	if d.delay <= 0 || !started() {
		return
	}
	log.Info("draining: readiness fails and connections close after each response", "delay", d.delay.String())
	t := time.NewTimer(d.delay)
	defer t.Stop()
	<-t.C
}

// check is the readiness check: errDraining once draining.
func (d *drainer) check() error {
	if d.draining.Load() {
		return errDraining
	}
	return nil
}

// wrap asks clients to close their connection after each response once
// draining.
func (d *drainer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
