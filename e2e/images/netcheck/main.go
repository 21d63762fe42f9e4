// Command netcheck is the node tier's application: a server and a client
// in one static binary, for pods whose traffic the scenarios look at.
//
//	netcheck serve PORT...   serve HTTP on each port: / answers
//	                         "netcheck HOSTNAME port PORT"; /fetch?url=U
//	                         GETs U from inside the pod and answers with
//	                         its status and body; /healthz answers ok;
//	                         any other path 404
//	netcheck get URL...      GET each URL (retrying up to 60s), print the
//	                         answer, exit 1 if one never answers 200
//
// With NETCHECK_FIRST set to a URL, serve first GETs it once, before it
// listens, and prints "netcheck first GET URL: STATUS" (or the error): an
// application that says what it found when it started (the proxy's
// readiness, say).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netcheck serve PORT... | get URL...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "get":
		err = getAll(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netcheck:", err)
		os.Exit(1)
	}
}

// A connection per request, so that each is a connection of its own to
// the proxy and to a Service's endpoints.
var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func serve(ctx context.Context, ports []string) error {
	if len(ports) == 0 {
		return errors.New("serve: no port")
	}
	if u := os.Getenv("NETCHECK_FIRST"); u != "" {
		status, _, err := get(ctx, u)
		if err != nil {
			fmt.Printf("netcheck first GET %s: %v\n", u, err)
		} else {
			fmt.Printf("netcheck first GET %s: %d\n", u, status)
		}
	}
	host, _ := os.Hostname()
	errs := make(chan error, len(ports))
	for _, p := range ports {
		mux := http.NewServeMux()
		mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "netcheck %s port %s\n", host, p) }) //nolint:gosec // plain text of our own hostname and port
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
			status, body, err := get(r.Context(), r.URL.Query().Get("url"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			w.WriteHeader(status)
			_, _ = w.Write(body) //nolint:gosec // a test application relays what it fetched, as text
		})
		srv := &http.Server{Addr: net.JoinHostPort("", p), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errs <- srv.ListenAndServe() }()
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
	}
	fmt.Println("netcheck serving on", ports)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // fetching the URL the test names is netcheck's job
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req) //nolint:gosec // as above
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read only
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

func getAll(ctx context.Context, urls []string) error {
	for _, u := range urls {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		var last error
		for ctx.Err() == nil {
			status, body, err := get(ctx, u)
			if err == nil && status == http.StatusOK {
				fmt.Printf("GET %s: %d %s", u, status, body)
				last = nil
				break
			}
			if err == nil {
				err = fmt.Errorf("status %d: %s", status, body)
			}
			last = err
			fmt.Printf("GET %s: %v (retrying)\n", u, err)
			time.Sleep(time.Second)
		}
		cancel()
		if last != nil {
			return fmt.Errorf("GET %s: %w", u, last)
		}
	}
	return nil
}
