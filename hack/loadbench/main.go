// Command loadbench measures meshinject serve under load against a floor
// server and, with -istio, Istio's own injector, in the same run. The floor
// is this program re-executed with -floor-server: over the same TLS
// settings it decodes the AdmissionReview and the pod and encodes an
// allowed response, the least any webhook does. Istio's injector is
// e2e/tools/istio's istioinjector: pkg/kube/inject as istiod runs it, with
// the injector config and mesh config Istio's chart renders (-istio-config),
// native sidecars on and logging at error level. All run as subprocesses
// with the same garbage-collector target (-gc-percent, meshinject serve's
// default): CPU is read from /proc/<pid>/stat, memory from
// /proc/<pid>/status, allocations from each one's go_memstats_mallocs_total.
// Each server's answer is checked once: the patch, applied to the pod, adds
// istio-proxy. Traffic goes to 127.0.0.1 only, for a fixed time per
// measurement.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/hack/benchpods"
	"github.com/meshinject/meshinject/hack/internal/proc"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

func main() {
	var o options
	floorServer := flag.Bool("floor-server", false, "serve as the floor server (internal)")
	port := flag.Int("port", 0, "floor server port (internal)")
	metricsPort := flag.Int("metrics-port", 0, "floor server metrics port (internal)")
	flag.StringVar(&o.binary, "meshinject", "bin/meshinject", "meshinject binary to measure")
	flag.StringVar(&o.memoryLimit, "memory-limit", "256Mi", "meshinject serve's --memory-limit, the container memory limit deploy/ sets (its garbage collector's soft limit is 30% of it; empty: none)")
	flag.StringVar(&o.istio, "istio", "", "Istio's injector (e2e/tools/istio's istioinjector) to measure as a third server (default: none)")
	flag.StringVar(&o.istioConfig, "istio-config", "", "directory with Istio's chart-rendered config, values and mesh, for -istio")
	flag.StringVar(&o.certDir, "cert-dir", ".cache/loadbench-certs", "directory for the test certificate")
	flag.DurationVar(&o.d, "duration", 5*time.Second, "measuring time per server, pod and concurrency")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up time before each measurement")
	flag.StringVar(&o.levels, "concurrency", "8,32", "comma-separated concurrency levels")
	flag.IntVar(&o.rounds, "rounds", 10, "slices each server's measuring time is cut into, taken in turns with the other servers")
	gcPercent := flag.Int("gc-percent", 400, "garbage-collector target of every server (meshinject serve's default)")
	flag.StringVar(&o.pods, "pods", "small,medium,large", "comma-separated pods to send (of "+strings.Join(podNamesOf(benchpods.All()), ", ")+")")
	flag.IntVar(&o.distinct, "distinct", 0, "send N different workloads' pods in turn (seeded generator) instead of -pods, and report the render cache's hit rate")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of -distinct's generator")
	flag.StringVar(&o.compare, "compare", "", "comma-separated NAME=BINARY: other meshinject binaries (e.g. built without a piece of speed code) measured beside -meshinject in the same slices, with their CPU and p99 against it")
	flag.StringVar(&o.profile, "profile", "", "after the table, load meshinject once more with the first pod and concurrency for -duration and write its CPU profile to this file")
	flag.Parse()
	gcTarget = strconv.Itoa(*gcPercent)
	var err error
	if *floorServer {
		debug.SetGCPercent(*gcPercent)
		err = serveFloor(*port, *metricsPort, o.certDir)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// gcTarget is the -gc-percent every server runs with.
var gcTarget string

func tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

func review(pod []byte, i int) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-` + strconv.Itoa(i) +
		`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"shop","operation":"CREATE","object":` + string(pod) + `}}`)
}

// options are run's settings, one per flag.
type options struct {
	binary, istio, istioConfig, certDir, levels, pods, profile string
	compare                                                    string
	memoryLimit                                                string
	d, warmup                                                  time.Duration
	rounds, distinct                                           int
	seed                                                       uint64
}

func podNamesOf(pods []benchpods.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return names
}

// workloads are the bench pods named in the comma-separated list, each a
// workload of one body, or the -distinct mix.
func workloads(o options) ([]workload, error) {
	if o.distinct > 0 {
		return []workload{distinct(o.distinct, o.seed)}, nil
	}
	all := benchpods.All()
	var out []workload
	for _, name := range strings.Split(o.pods, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(p benchpods.Pod) bool { return p.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("-pods %q: no pod %q (have %s)", o.pods, name, strings.Join(podNamesOf(all), ", "))
		}
		out = append(out, workload{name: name, bodies: [][]byte{review(all[i].JSON, 0)}})
	}
	return out, nil
}

func run(o options) error {
	if o.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if (o.istio == "") != (o.istioConfig == "") {
		return fmt.Errorf("-istio and -istio-config go together")
	}
	ws, err := workloads(o)
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
	servers, side, err := startServers(o)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ctx := context.Background()
	if err := verifyAll(ctx, pool, servers, ws); err != nil {
		return err
	}
	fmt.Printf("# loadbench: %s per server and cell in %d alternating slices after %s warm-up, keep-alive HTTPS on 127.0.0.1, GOMAXPROCS of the host, GOGC %s\n", o.d, o.rounds, o.warmup, gcTarget)
	fmt.Println("| pod | c | server | admissions/s | p50 | p99 | max | CPU/admission | allocs/admission | RSS / peak MiB | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	var rows, variants []string
	for _, w := range ws {
		for _, n := range conc {
			hits0, miss0 := cacheLookups(servers[1])
			res, err := measureCell(ctx, o, pool, servers, w, n)
			if err != nil {
				return err
			}
			hits1, miss1 := cacheLookups(servers[1])
			rows = append(rows, ratioRow(w.name, n, servers, res, hits1-hits0, miss1-miss0))
			variants = append(variants, variantRows(w.name, n, servers, res)...)
		}
	}
	printRatios(rows, o.istio != "")
	printVariants(variants)
	if o.profile != "" {
		return profileLoad(ctx, pool, servers[1], side, ws[0].bodies[0], conc[0], o.d, o.profile)
	}
	return nil
}

// verifyAll checks each server's answer to the first body of each workload.
func verifyAll(ctx context.Context, pool *x509.CertPool, servers []*server, ws []workload) error {
	cl := client(pool, 1)
	defer cl.CloseIdleConnections()
	for _, s := range servers {
		for _, w := range ws {
			if err := verify(ctx, cl, s, w.bodies[0]); err != nil {
				return err
			}
		}
	}
	return nil
}

// cacheLookups reads meshinject's render cache hits and misses.
func cacheLookups(mesh *server) (hits, misses float64) {
	hits, _ = scrape(mesh.metricsURL, "meshinject_render_cache_lookups_total", "result", "hit")
	misses, _ = scrape(mesh.metricsURL, "meshinject_render_cache_lookups_total", "result", "miss")
	return hits, misses
}

func ratio(a, b float64) string { return fmt.Sprintf("%.2f×", a/b) }

// ratioRow is a cell's ratios: meshinject to the floor, Istio to
// meshinject, and meshinject's render cache hit rate.
func ratioRow(name string, n int, servers []*server, res []result, hits, misses float64) string {
	row := fmt.Sprintf("| %s | %d | %s | %s |", name, n,
		ratio(float64(res[1].cpuPer), float64(res[0].cpuPer)), ratio(float64(res[1].p99), float64(res[0].p99)))
	if len(res) > 2 && servers[2].name == "istio" {
		row += fmt.Sprintf(" %s | %s | %s |", ratio(float64(res[2].cpuPer), float64(res[1].cpuPer)),
			ratio(float64(res[2].p99), float64(res[1].p99)), ratio(res[2].allocsPer, res[1].allocsPer))
	}
	hit := "-"
	if hits+misses > 0 {
		hit = fmt.Sprintf("%.1f%%", 100*hits/(hits+misses))
	}
	return row + " " + hit + " |"
}

func printRatios(rows []string, istio bool) {
	fmt.Println()
	if istio {
		fmt.Println("| pod | c | meshinject/floor CPU | meshinject/floor p99 | Istio/meshinject CPU | Istio/meshinject p99 | Istio/meshinject allocs | render cache hits |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
	} else {
		fmt.Println("| pod | c | meshinject/floor CPU | meshinject/floor p99 | render cache hits |")
		fmt.Println("|---|---|---|---|---|")
	}
	for _, r := range rows {
		fmt.Println(r)
	}
}

// variantRows are a cell's -compare rows: each variant's CPU and p99
// against meshinject's, and the share of the variant's CPU that
// meshinject saves.
func variantRows(name string, n int, servers []*server, res []result) []string {
	var rows []string
	for i, s := range servers {
		if !s.variant || res[i].cpuPer == 0 || res[1].cpuPer == 0 {
			continue
		}
		saved := 100 * (1 - float64(res[1].cpuPer)/float64(res[i].cpuPer))
		rows = append(rows, fmt.Sprintf("| %s | %d | %s | %s | %s | %.1f%% |", name, n, s.name,
			ratio(float64(res[i].cpuPer), float64(res[1].cpuPer)), ratio(float64(res[i].p99), float64(res[1].p99)), saved))
	}
	return rows
}

func printVariants(rows []string) {
	if len(rows) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("| pod | c | variant | variant/meshinject CPU | variant/meshinject p99 | server CPU meshinject saves |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Println(r)
	}
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

// profileLoad loads s with body from n workers for d while its pprof
// endpoint at sideURL records a CPU profile, written to file.
func profileLoad(ctx context.Context, pool *x509.CertPool, s *server, sideURL string, body []byte, n int, d time.Duration, file string) error {
	cl := client(pool, n)
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
	if _, err := load(ctx, cl, s, workload{name: "profile", bodies: [][]byte{body}}, n, time.Duration(seconds)*time.Second); err != nil {
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
