package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/test/testutil"
)

const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
	`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"namespace":"shop","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},` +
	`"spec":{"containers":[{"name":"app","image":"a"}]}}}}`

// startServer runs the service with a certificate directory, waits for
// /readyz, and returns its webhook URL, side-port URL and the CA.
func startServer(t *testing.T, dir string, opts Options) (string, string, *certs.Bundle) {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeServing(t, ca, dir)
	ctx, cancel := context.WithCancel(t.Context())
	opts.Host, opts.Port = "127.0.0.1", testutil.FreePort(t)
	freeAddrs(t, &opts)
	opts.CertDir = dir
	if opts.Log.GetSink() == nil {
		opts.Log = testr.New(t)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	host, port, _ := net.SplitHostPort(opts.HealthAddr)
	health := "http://" + net.JoinHostPort(host, port)
	waitReadyz(t, health, done)
	return "https://127.0.0.1:" + strconv.Itoa(opts.Port), health, ca
}

// freeAddrs gives o free loopback metrics and health addresses where it
// has none.
func freeAddrs(t *testing.T, o *Options) {
	t.Helper()
	for _, a := range []*string{&o.MetricsAddr, &o.HealthAddr} {
		if *a == "" {
			*a = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
		}
	}
}

// waitReadyz waits up to 30 s for health's /readyz to pass; it fails the
// test at once if Run returns on done first.
func waitReadyz(t *testing.T, health string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for readyz(health) != nil {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready within 30s")
		}
	}
}

// servingDir is a certificate directory holding a serving certificate for
// 127.0.0.1 from a new CA.
func servingDir(t *testing.T) string {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeServing(t, ca, dir)
	return dir
}

func writeServing(t *testing.T, ca *certs.Bundle, dir string) *certs.Bundle {
	t.Helper()
	srv, err := certs.NewServing(ca, certs.Options{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteDir(dir, srv, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	return srv
}

func client(ca *certs.Bundle, keepAlive bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: !keepAlive,
	}}
}

func postReview(c *http.Client, url string) error {
	resp, err := c.Post(url+"/inject", "application/json", bytes.NewReader([]byte(review)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"patchType":"JSONPatch"`)) {
		return &badResponse{code: resp.StatusCode, body: string(b)}
	}
	return nil
}

type badResponse struct {
	code int
	body string
}

func (b *badResponse) Error() string { return "HTTP " + strconv.Itoa(b.code) + ": " + b.body }

func TestServeAndProbes(t *testing.T) {
	t.Parallel()
	// deploy/ binds [$(POD_IP)]:8080 and :8081, brackets and all.
	metricsPort := strconv.Itoa(testutil.FreePort(t))
	url, health, ca := startServer(t, t.TempDir(), Options{MetricsAddr: "[127.0.0.1]:" + metricsPort, HealthAddr: "[127.0.0.1]:" + strconv.Itoa(testutil.FreePort(t))})
	c := client(ca, true)
	if err := postReview(c, url); err != nil {
		t.Fatal(err)
	}
	for p, last := range map[string]string{"/healthz?verbose": "healthz check passed", "/readyz?verbose": "readyz check passed", "/readyz/config": "ok"} {
		resp, err := http.Get(health + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(strings.TrimSpace(string(b)), last) {
			t.Errorf("%s: %d %q, want 200 ending %q", p, resp.StatusCode, b, last)
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + metricsPort + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"sidecar_injection_requests_total ", "sidecar_injection_success_total ", "meshinject_certificate_expiry_timestamp_seconds", "controller_runtime_webhook_requests_total"} {
		if !bytes.Contains(b, []byte(m)) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// HTTP/2 is off by default.
	conn, err := tls.Dial("tcp", url[len("https://"):], &tls.Config{RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Error("HTTP/2 negotiated without --enable-http2")
	}
	conn.Close()
	if _, err := tls.Dial("tcp", url[len("https://"):], &tls.Config{RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	cbc := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	if _, err := tls.Dial("tcp", url[len("https://"):], &tls.Config{RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs, MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Error("a TLS 1.2 CBC-SHA1 suite accepted")
	}
}

// TestCertSwapUnderLoad replaces the certificate files while clients keep
// sending reviews over new connections: no request may fail, and requests
// complete between every two swaps (the load has a deadline, not a quota:
// a loaded machine is slower, not wrong).
func TestCertSwapUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url, _, ca := startServer(t, dir, Options{})
	var failures, requests atomic.Int64
	ctx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := client(ca, false) // a handshake per request
			for ctx.Err() == nil {
				if err := postReview(c, url); err != nil && ctx.Err() == nil {
					failures.Add(1)
					t.Log(err)
				}
				requests.Add(1)
			}
		})
	}
	var serials []string
	for i := range 5 {
		before := requests.Load()
		testutil.Eventually(t, 30*time.Second, func() bool { return requests.Load() > before })
		serials = append(serials, writeServing(t, ca, dir).Cert.SerialNumber.String())
		t.Logf("swap %d after %d requests", i+1, requests.Load())
	}
	before := requests.Load()
	testutil.Eventually(t, 30*time.Second, func() bool { return requests.Load() > before })
	stop()
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during certificate swaps", failures.Load(), requests.Load())
	}
	// The last certificate written is the one served.
	testutil.Eventually(t, 10*time.Second, func() bool {
		conn, err := tls.Dial("tcp", url[len("https://"):], client(ca, false).Transport.(*http.Transport).TLSClientConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String() == serials[len(serials)-1]
	})
}

// TestProfiling serves /debug/pprof/ on its own address only when one is
// given, never on the health or metrics address.
func TestProfiling(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		o := Options{}
		freeAddrs(t, &o)
		if on {
			o.PprofAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
		}
		_, health, _ := startServer(t, t.TempDir(), o)
		for _, base := range []string{health, "http://" + o.MetricsAddr} {
			if code := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
				t.Errorf("%s/debug/pprof/ answered %d, want 404", base, code)
			}
		}
		if on {
			if code := get(t, "http://"+o.PprofAddr+"/debug/pprof/"); code != http.StatusOK {
				t.Errorf("--pprof-addr: /debug/pprof/ answered %d, want 200", code)
			}
		}
	}
}

// get is the status code of a GET of url.
func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
