package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// state is what the admin API reports.
type state struct {
	cdsSuccess, ldsSuccess atomic.Uint64
	// live is set once the capture listeners of the first listener
	// response are bound: Envoy's server.state LIVE and workers started.
	live atomic.Bool

	mu       sync.Mutex
	captures []capture
	certs    []certInfo
}

func (s *state) stats() map[string]uint64 {
	server := uint64(2) // PRE_INITIALIZING
	workers := uint64(0)
	if s.live.Load() {
		server, workers = 0, 1
	}
	return map[string]uint64{
		"cluster_manager.cds.update_success":   s.cdsSuccess.Load(),
		"cluster_manager.cds.update_rejected":  0,
		"listener_manager.lds.update_success":  s.ldsSuccess.Load(),
		"listener_manager.lds.update_rejected": 0,
		"server.state":                         server,
		"listener_manager.workers_started":     workers,
	}
}

// serveAdmin serves the admin API on the bootstrap's admin address until
// ctx ends; POST /quitquitquit calls quit.
func serveAdmin(ctx context.Context, boot *bootstrap, st *state, quit func()) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var filter *regexp.Regexp
		if f := r.URL.Query().Get("filter"); f != "" {
			var err error
			if filter, err = regexp.Compile(f); err != nil {
				http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		stats := st.stats()
		names := make([]string, 0, len(stats))
		for k := range stats {
			if filter == nil || filter.MatchString(k) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(w, "%s: %d\n", k, stats[k])
		}
	})
	mux.HandleFunc("/stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		stats := st.stats()
		fmt.Fprintln(w, "# TYPE envoy_server_state gauge")
		fmt.Fprintf(w, "envoy_server_state %d\n", stats["server.state"])
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !st.live.Load() {
			http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "LIVE")
	})
	mux.HandleFunc("/certs", func(w http.ResponseWriter, _ *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"certificates": st.certs})
	})
	mux.HandleFunc("/standin/captures", func(w http.ResponseWriter, _ *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		_ = json.NewEncoder(w).Encode(st.captures)
	})
	for _, p := range []string{"/drain_listeners", "/healthcheck/fail", "/healthcheck/ok", "/logging"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "OK") })
	}
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "OK")
		go quit()
	})
	return serveHTTP(ctx, boot.Admin, mux)
}

// serveStatic serves the bootstrap's static listeners that route to a
// static TCP cluster (the agent's status port, the admin API) by
// forwarding each request to that cluster.
func serveStatic(ctx context.Context, boot *bootstrap) error {
	errs := make(chan error, len(boot.Listeners))
	n := 0
	for _, l := range boot.Listeners {
		target := boot.Clusters[l.Cluster]
		if l.Addr == "" || target == "" || strings.HasPrefix(target, "unix:") {
			continue
		}
		n++
		proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
		go func() { errs <- serveHTTP(ctx, l.Addr, proxy) }()
		record("listening", map[string]any{"listener": l.Name, "address": l.Addr, "forwards_to": l.Cluster})
	}
	for range n {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// serveHTTP serves h on addr until ctx ends.
func serveHTTP(ctx context.Context, addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
