package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

type result struct {
	rate               float64
	p50, p99, maxL     time.Duration
	cpuPer             time.Duration
	allocsPer          float64
	rss, peak          float64 // MiB at the end of the cell, and the process's peak
	errors, admissions int
}

// sample is what one load period measured of one server.
type sample struct {
	lat     []time.Duration
	errors  int
	elapsed time.Duration
	ticks   int64
	allocs  float64
}

// load sends w's bodies in turn from n workers over keep-alive connections
// for d.
func load(ctx context.Context, c *http.Client, s *server, w workload, n int, d time.Duration) (sample, error) {
	t0, err := s.cpuTicks()
	if err != nil {
		return sample{}, err
	}
	m0, err := s.mallocs()
	if err != nil {
		return sample{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var out sample
	var wg sync.WaitGroup
	var next atomic.Uint64
	start := time.Now()
	for range n {
		wg.Go(func() {
			mine, bad := send(ctx, c, s, w, &next)
			mu.Lock()
			out.lat = append(out.lat, mine...)
			out.errors += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	t1, err := s.cpuTicks()
	if err != nil {
		return sample{}, err
	}
	m1, err := s.mallocs()
	if err != nil {
		return sample{}, err
	}
	out.ticks, out.allocs = t1-t0, m1-m0
	return out, nil
}

// send posts reviews until ctx ends and returns their latencies and the
// number of failed ones.
func send(ctx context.Context, c *http.Client, s *server, w workload, next *atomic.Uint64) ([]time.Duration, int) {
	var lat []time.Duration
	bad := 0
	for ctx.Err() == nil {
		body := w.bodies[next.Add(1)%uint64(len(w.bodies))]
		t := time.Now()
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, s.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			bad++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"allowed":true`)) {
			bad++
			continue
		}
		lat = append(lat, time.Since(t))
	}
	return lat, bad
}

// summarize merges the samples of one server into its figures.
func summarize(s *server, samples []sample) (result, error) {
	var all sample
	for _, x := range samples {
		all.lat = append(all.lat, x.lat...)
		all.errors += x.errors
		all.elapsed += x.elapsed
		all.ticks += x.ticks
		all.allocs += x.allocs
	}
	lat := all.lat
	if len(lat) == 0 {
		return result{}, fmt.Errorf("%s: no successful requests (%d errors)", s.name, all.errors)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	cpu := time.Duration(all.ticks) * time.Second / clockTicks //nolint:gosec // tick counts are far below 2^63
	rss, peak, err := s.memory()
	if err != nil {
		return result{}, err
	}
	return result{
		rate: float64(len(lat)) / all.elapsed.Seconds(),
		p50:  pct(0.50), p99: pct(0.99), maxL: lat[len(lat)-1],
		cpuPer: cpu / time.Duration(len(lat)), allocsPer: all.allocs / float64(len(lat)),
		rss: rss, peak: peak, errors: all.errors, admissions: len(lat),
	}, nil
}

func client(pool *x509.CertPool, n int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: n, MaxConnsPerHost: n,
	}}
}

// measureCell loads each server with w at concurrency n and prints a row
// for each: after a warm-up, the servers take turns in short slices (the
// order reversed every other round), so all see the same machine and a
// noisy neighbour lands on every side of the ratios.
func measureCell(ctx context.Context, o options, pool *x509.CertPool, servers []*server, w workload, n int) ([]result, error) {
	cl := client(pool, n)
	defer cl.CloseIdleConnections()
	for _, s := range servers {
		if _, err := load(ctx, cl, s, w, n, o.warmup); err != nil {
			return nil, err
		}
	}
	samples := make([][]sample, len(servers))
	for round := range o.rounds {
		order := make([]int, len(servers))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			x, err := load(ctx, cl, servers[i], w, n, o.d/time.Duration(o.rounds))
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], x)
		}
	}
	out := make([]result, len(servers))
	for i, s := range servers {
		r, err := summarize(s, samples[i])
		if err != nil {
			return nil, err
		}
		out[i] = r
		fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %s | %s | %.0f | %.1f / %.1f | %d |\n", w.name, n, s.name, r.rate,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.maxL.Round(time.Microsecond),
			r.cpuPer.Round(time.Microsecond), r.allocsPer, r.rss, r.peak, r.errors)
	}
	return out, nil
}

// verify sends body to s once and checks its answer: allowed, and, for an
// injector, a JSON patch that, applied to the pod, adds istio-proxy.
func verify(ctx context.Context, c *http.Client, s *server, body []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	var b []byte
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err == nil {
			b, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30s: %w", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !s.injects {
		return nil
	}
	return checkInjected(s.name, body, b)
}

// checkInjected applies the answer's patch to the review's pod and looks
// for istio-proxy among its containers or init containers.
func checkInjected(name string, review, answer []byte) error {
	var in struct {
		Request struct{ Object json.RawMessage } `json:"request"`
	}
	var out struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   string `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(review, &in); err != nil {
		return err
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return fmt.Errorf("%s: answer: %w", name, err)
	}
	if !out.Response.Allowed || out.Response.Patch == "" {
		return fmt.Errorf("%s: answer is not an allowed patch: %.300s", name, answer)
	}
	raw, err := base64.StdEncoding.DecodeString(out.Response.Patch)
	if err != nil {
		return fmt.Errorf("%s: patch: %w", name, err)
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return fmt.Errorf("%s: patch: %w", name, err)
	}
	pod, err := patch.Apply(in.Request.Object)
	if err != nil {
		return fmt.Errorf("%s: patch does not apply to the pod: %w", name, err)
	}
	var p struct {
		Spec struct {
			Containers, InitContainers []struct{ Name string }
		}
	}
	if err := json.Unmarshal(pod, &p); err != nil {
		return err
	}
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		if c.Name == "istio-proxy" {
			return nil
		}
	}
	return fmt.Errorf("%s: the patched pod has no istio-proxy", name)
}
