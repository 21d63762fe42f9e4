// Command loadbench measures meshinject serve under load against a floor
// server in the same run. The floor is this program re-executed with
// -floor-server: over the same TLS settings it decodes the AdmissionReview
// and the pod and encodes an allowed response, the least any webhook does.
// Both run as subprocesses so their CPU is read from /proc/<pid>/stat, with
// the same garbage-collector target (-gc-percent, meshinject serve's
// default).
// Traffic goes to 127.0.0.1 only, for a fixed time per measurement.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/hack/internal/proc"
	"github.com/meshinject/meshinject/internal/benchpods"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

func main() {
	var (
		floorServer = flag.Bool("floor-server", false, "serve as the floor server (internal)")
		port        = flag.Int("port", 0, "floor server port (internal)")
		binary      = flag.String("meshinject", "bin/meshinject", "meshinject binary to measure")
		certDir     = flag.String("cert-dir", ".cache/loadbench-certs", "directory for the test certificate")
		duration    = flag.Duration("duration", 5*time.Second, "measuring time per server, pod and concurrency")
		warmup      = flag.Duration("warmup", time.Second, "warm-up time before each measurement")
		concurrency = flag.String("concurrency", "8,32", "comma-separated concurrency levels")
		rounds      = flag.Int("rounds", 10, "slices each server's measuring time is cut into, taken in turns with the other server")
		gcPercent   = flag.Int("gc-percent", 400, "garbage-collector target of both servers (meshinject serve's default)")
		podNames    = flag.String("pods", "small,medium,large", "comma-separated pods to send (of "+strings.Join(podNamesOf(benchpods.All()), ", ")+")")
		profile     = flag.String("profile", "", "after the table, load meshinject once more with the first pod and concurrency for -duration and write its CPU profile to this file")
	)
	flag.Parse()
	gcTarget = strconv.Itoa(*gcPercent)
	var err error
	if *floorServer {
		debug.SetGCPercent(*gcPercent)
		err = serveFloor(*port, *certDir)
	} else {
		err = run(options{binary: *binary, certDir: *certDir, d: *duration, warmup: *warmup, levels: *concurrency,
			rounds: *rounds, pods: *podNames, profile: *profile})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// gcTarget is the -gc-percent both servers run with.
var gcTarget string

func tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// serveFloor decodes the review and the pod and answers allowed.
func serveFloor(port int, certDir string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/inject", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 7<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(rev.Request.Object.Raw, &pod); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rev.Response = &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
		rev.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&rev)
	})
	cfg := tlsConfig()
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: mux, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(filepath.Join(certDir, certs.CertFile), filepath.Join(certDir, certs.KeyFile))
}

type server struct {
	name string
	url  string
	cmd  *exec.Cmd
}

func start(name string, args []string, port int) (*server, error) {
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // runs the binaries named on our own command line
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &server{name: name, url: "https://127.0.0.1:" + strconv.Itoa(port) + "/inject", cmd: cmd}, nil
}

func (s *server) stop() { proc.Stop(s.cmd, 10*time.Second) }

// cpuTicks is the process's user+system CPU time in clock ticks.
func (s *server) cpuTicks() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unparsable /proc stat line")
	}
	return u + st, nil
}

func review(pod []byte, i int) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-` + strconv.Itoa(i) +
		`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"shop","operation":"CREATE","object":` + string(pod) + `}}`)
}

func waitReady(c *http.Client, s *server, body []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Post(s.url, "application/json", bytes.NewReader(body))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30s: %w", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type result struct {
	rate                float64
	p50, p90, p99, maxL time.Duration
	cpuPer              time.Duration
	errors              int
}

// sample is what one load period measured of one server.
type sample struct {
	lat     []time.Duration
	errors  int
	elapsed time.Duration
	ticks   int64
}

// load sends body from n workers over keep-alive connections for d.
func load(ctx context.Context, c *http.Client, s *server, body []byte, n int, d time.Duration) (sample, error) {
	t0, err := s.cpuTicks()
	if err != nil {
		return sample{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var out sample
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for ctx.Err() == nil {
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
				mine = append(mine, time.Since(t))
			}
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
	out.ticks = t1 - t0
	return out, nil
}

// summarize merges the samples of one server into its figures.
func summarize(name string, samples []sample) (result, error) {
	var all sample
	for _, x := range samples {
		all.lat = append(all.lat, x.lat...)
		all.errors += x.errors
		all.elapsed += x.elapsed
		all.ticks += x.ticks
	}
	lat := all.lat
	if len(lat) == 0 {
		return result{}, fmt.Errorf("%s: no successful requests (%d errors)", name, all.errors)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	cpu := time.Duration(all.ticks) * time.Second / clockTicks //nolint:gosec // tick counts are far below 2^63
	return result{
		rate: float64(len(lat)) / all.elapsed.Seconds(),
		p50:  pct(0.50), p90: pct(0.90), p99: pct(0.99), maxL: lat[len(lat)-1],
		cpuPer: cpu / time.Duration(len(lat)), errors: all.errors,
	}, nil
}

// options are run's settings, one per flag.
type options struct {
	binary, certDir, levels, pods, profile string
	d, warmup                              time.Duration
	rounds                                 int
}

func podNamesOf(pods []benchpods.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return names
}

// selectPods returns the bench pods named in the comma-separated list.
func selectPods(list string) ([]benchpods.Pod, error) {
	all := benchpods.All()
	var out []benchpods.Pod
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(p benchpods.Pod) bool { return p.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("-pods %q: no pod %q (have %s)", list, name, strings.Join(podNamesOf(all), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func run(o options) error {
	if o.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	pods, err := selectPods(o.pods)
	if err != nil {
		return err
	}
	conc, err := levelsOf(o.levels)
	if err != nil {
		return err
	}
	ca, err := ensureCerts(o.certDir)
	if err != nil {
		return err
	}
	floor, mesh, side, err := startServers(o)
	if err != nil {
		return err
	}
	defer floor.stop()
	defer mesh.stop()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	fmt.Printf("# loadbench: %s per server and cell in %d alternating slices after %s warm-up, keep-alive HTTPS on 127.0.0.1, GOMAXPROCS of the host\n", o.d, o.rounds, o.warmup)
	fmt.Println("| pod | c | server | admissions/s | p50 | p90 | p99 | max | CPU/admission | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	ctx := context.Background()
	var ratios []string
	for _, p := range pods {
		for _, n := range conc {
			pair, err := measureCell(ctx, o, pool, []*server{floor, mesh}, p, n)
			if err != nil {
				return err
			}
			ratios = append(ratios, fmt.Sprintf("| %s | %d | %.2f× | %.2f× |", p.Name, n,
				float64(pair[1].cpuPer)/float64(pair[0].cpuPer), float64(pair[1].p99)/float64(pair[0].p99)))
		}
	}
	fmt.Println()
	fmt.Println("| pod | c | CPU/admission vs floor | p99 vs floor |")
	fmt.Println("|---|---|---|---|")
	for _, r := range ratios {
		fmt.Println(r)
	}
	if o.profile != "" {
		return profileLoad(ctx, pool, mesh, side, review(pods[0].JSON, 0), conc[0], o.d, o.profile)
	}
	return nil
}

// levelsOf parses -concurrency.
func levelsOf(levels string) ([]int, error) {
	var conc []int
	for _, c := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-concurrency %q: want positive integers", levels)
		}
		conc = append(conc, n)
	}
	return conc, nil
}

// startServers starts the floor server and meshinject serve, and returns
// them and the URL of meshinject's pprof address (served when profiling).
func startServers(o options) (floor, mesh *server, pprofURL string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, "", err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = proc.FreePort(); err != nil {
			return nil, nil, "", err
		}
	}
	fp, mp, hp, pp := ports[0], ports[1], ports[2], ports[3]
	floor, err = start("floor", []string{self, "-floor-server", "-port", strconv.Itoa(fp), "-cert-dir", o.certDir, "-gc-percent", gcTarget}, fp)
	if err != nil {
		return nil, nil, "", err
	}
	args := []string{o.binary, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(mp), "--metrics-addr", "0",
		"--health-addr", "127.0.0.1:" + strconv.Itoa(hp), "--cert-dir", o.certDir, "--log-level", "error", "--gc-percent", gcTarget}
	if o.profile != "" {
		args = append(args, "--pprof-addr", "127.0.0.1:"+strconv.Itoa(pp))
	}
	if mesh, err = start("meshinject", args, mp); err != nil {
		floor.stop()
		return nil, nil, "", err
	}
	return floor, mesh, "http://127.0.0.1:" + strconv.Itoa(pp), nil
}

// measureCell loads each server with pod at concurrency n and prints a
// row for each: after a warm-up, the two servers take turns in short
// slices (the order flipped every round), so both see the same machine
// and a noisy neighbour lands on both sides of the ratio.
func measureCell(ctx context.Context, o options, pool *x509.CertPool, servers []*server, p benchpods.Pod, n int) ([2]result, error) {
	var pair [2]result
	body := review(p.JSON, 0)
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: n, MaxConnsPerHost: n,
	}}
	defer cl.CloseIdleConnections()
	for _, s := range servers {
		if err := waitReady(cl, s, body); err != nil {
			return pair, err
		}
		if _, err := load(ctx, cl, s, body, n, o.warmup); err != nil {
			return pair, err
		}
	}
	var samples [2][]sample
	for round := range o.rounds {
		for k := range servers {
			i := k
			if round%2 == 1 {
				i = len(servers) - 1 - k
			}
			x, err := load(ctx, cl, servers[i], body, n, o.d/time.Duration(o.rounds))
			if err != nil {
				return pair, err
			}
			samples[i] = append(samples[i], x)
		}
	}
	for i, s := range servers {
		r, err := summarize(s.name, samples[i])
		if err != nil {
			return pair, err
		}
		pair[i] = r
		fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %s | %s | %s | %d |\n", p.Name, n, s.name, r.rate,
			r.p50.Round(time.Microsecond), r.p90.Round(time.Microsecond), r.p99.Round(time.Microsecond),
			r.maxL.Round(time.Microsecond), r.cpuPer.Round(time.Microsecond), r.errors)
	}
	return pair, nil
}

// profileLoad loads s with body from n workers for d while its pprof
// endpoint at sideURL records a CPU profile, written to file.
func profileLoad(ctx context.Context, pool *x509.CertPool, s *server, sideURL string, body []byte, n int, d time.Duration, file string) error {
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: n, MaxConnsPerHost: n,
	}}
	defer cl.CloseIdleConnections()
	seconds := max(1, int(d.Seconds()))
	type fetched struct {
		b   []byte
		err error
	}
	done := make(chan fetched, 1)
	go func() {
		pc := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
		resp, err := pc.Get(sideURL + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds))
		if err != nil {
			done <- fetched{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("profile: HTTP %d: %s", resp.StatusCode, b)
		}
		done <- fetched{b, err}
	}()
	if _, err := load(ctx, cl, s, body, n, time.Duration(seconds)*time.Second); err != nil {
		return err
	}
	f := <-done
	if f.err != nil {
		return f.err
	}
	fmt.Fprintf(os.Stderr, "loadbench: CPU profile of %s written to %s\n", s.name, file)
	return os.WriteFile(file, f.b, 0o600)
}

func ensureCerts(dir string) (*certs.Bundle, error) {
	return proc.LoopbackCerts(dir, "loadbench CA")
}
