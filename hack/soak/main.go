// Command soak runs meshinject serve under steady load for a fixed time, as
// deploy/ runs it (memory limit 256Mi), with one review in every
// -hostile-every built to be expensive (the hostile-pod tier's pods near
// the pod size limit, one over it, one nested too deep). Every -interval it
// prints the server's RSS, its goroutines and the p99 latency of the
// ordinary reviews. It fails when a review gets a wrong answer or none,
// when the RSS passes half the memory limit, when the server's metrics
// cannot be read, or when goroutines or the heap grow.
// Traffic goes to 127.0.0.1 only; every request has a timeout.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshinject/meshinject/hack/internal/proc"
)

type options struct {
	binary       string
	certDir      string
	duration     time.Duration
	interval     time.Duration
	concurrency  int
	hostileEvery int
	memoryLimit  string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "meshinject", "bin/meshinject", "meshinject binary to run")
	flag.StringVar(&o.certDir, "cert-dir", ".cache/soak-certs", "directory for the test certificate")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.DurationVar(&o.interval, "interval", time.Minute, "how often a row is printed")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients, each over one keep-alive connection")
	flag.IntVar(&o.hostileEvery, "hostile-every", 20, "one review in this many is hostile")
	flag.StringVar(&o.memoryLimit, "memory-limit", "256Mi", "the server's --memory-limit, as deploy/ sets it; RSS must stay under half")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	limit, err := resource.ParseQuantity(o.memoryLimit)
	if err != nil {
		return fmt.Errorf("-memory-limit %q: %w", o.memoryLimit, err)
	}
	pool, err := writeCerts(o.certDir)
	if err != nil {
		return err
	}
	srv, err := startServer(o)
	if err != nil {
		return err
	}
	defer srv.stop()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: o.concurrency,
	}}
	if err := srv.waitReady(30 * time.Second); err != nil {
		return err
	}
	m := newMix(o.hostileEvery)
	st := newStats()
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	done := make(chan struct{})
	for range o.concurrency {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ctx.Err() == nil; i++ {
				m.send(ctx, client, srv.url, st)
			}
		}()
	}
	rows := report(ctx, srv, st, o.interval)
	for range o.concurrency {
		<-done
	}
	return verdict(rows, st, limit.Value())
}

// server is the meshinject serve process.
type server struct {
	cmd                *exec.Cmd
	url, side, metrics string
}

func startServer(o options) (*server, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	side, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	metrics, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.binary, "serve", "--host=127.0.0.1", "--port="+strconv.Itoa(port), //nolint:gosec // the binary named on our command line
		"--health-addr=127.0.0.1:"+strconv.Itoa(side), "--metrics-addr=127.0.0.1:"+strconv.Itoa(metrics), "--cert-dir="+o.certDir, "--memory-limit="+o.memoryLimit,
		"--log-level=error", "--drain-delay=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.binary, err)
	}
	return &server{cmd: cmd, url: "https://127.0.0.1:" + strconv.Itoa(port) + "/inject", side: "http://127.0.0.1:" + strconv.Itoa(side),
		metrics: "http://127.0.0.1:" + strconv.Itoa(metrics) + "/metrics"}, nil
}

func (s *server) waitReady(timeout time.Duration) error {
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(s.side + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("meshinject serve not ready within %v", timeout)
}

func (s *server) stop() { proc.Stop(s.cmd, 15*time.Second) }

func writeCerts(dir string) (*x509.CertPool, error) {
	ca, err := proc.LoopbackCerts(dir, "soak CA")
	if err != nil {
		return nil, fmt.Errorf("write the test certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool, nil
}
