package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/hack/internal/proc"
)

// server is one measured webhook process.
type server struct {
	name       string
	url        string // its /inject
	metricsURL string // its /metrics, which carries go_memstats_mallocs_total
	cmd        *exec.Cmd
	injects    bool // its answer adds istio-proxy (not the floor's)
	variant    bool // a -compare binary
}

// start runs args as the server name, its webhook on port and /metrics on
// metricsPort, with env added to loadbench's environment.
func start(name string, args, env []string, port, metricsPort int) (*server, error) {
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // runs the binaries named on our own command line
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &server{name: name, url: "https://127.0.0.1:" + strconv.Itoa(port) + "/inject",
		metricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics", cmd: cmd, injects: name != "floor"}, nil
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

// memory is the process's resident set now and at its peak, in MiB.
func (s *server) memory() (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}

// mallocs is the process's cumulative count of heap allocations.
func (s *server) mallocs() (float64, error) {
	return scrape(s.metricsURL, "go_memstats_mallocs_total")
}

// scrape reads the value of the counter, gauge or untyped series name at
// url, with the given label pairs (name, value, ...).
func scrape(url, name string, labels ...string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	for _, m := range fams[name].GetMetric() {
		if hasLabels(m, labels) {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("%s: no series %s%v", url, name, labels)
}

// hasLabels is whether m has every label pair of pairs (name, value, ...).
func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] }) {
			return false
		}
	}
	return true
}

// serveFloor decodes the review and the pod and answers allowed; /metrics
// on metricsPort serves the Go runtime's metrics.
func serveFloor(port, metricsPort int, certDir string) error {
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
	go func() {
		m := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(metricsPort), Handler: promhttp.Handler(), ReadHeaderTimeout: 10 * time.Second}
		fmt.Fprintln(os.Stderr, "loadbench floor: metrics:", m.ListenAndServe())
	}()
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: mux, TLSConfig: tlsConfig(), ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServeTLS(filepath.Join(certDir, certs.CertFile), filepath.Join(certDir, certs.KeyFile))
}

// startServers starts the floor server, meshinject serve, with o.istio
// Istio's injector, and each of o.compare's meshinject binaries, and returns
// them and the URL of meshinject's pprof address (served when profiling).
func startServers(o options) (servers []*server, pprofURL string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	variants, err := comparesOf(o.compare)
	if err != nil {
		return nil, "", err
	}
	ports := make([]int, 8+2*len(variants))
	for i := range ports {
		if ports[i], err = proc.FreePort(); err != nil {
			return nil, "", err
		}
	}
	stopAll := func() {
		for _, s := range servers {
			s.stop()
		}
	}
	floor, err := start("floor", []string{self, "-floor-server", "-port", strconv.Itoa(ports[0]), "-metrics-port", strconv.Itoa(ports[1]),
		"-cert-dir", o.certDir, "-gc-percent", gcTarget}, nil, ports[0], ports[1])
	if err != nil {
		return nil, "", err
	}
	servers = append(servers, floor)
	mesh, err := startMeshinject(o, "meshinject", o.binary, ports[2], ports[3], ports[4], ports[5])
	if err != nil {
		stopAll()
		return nil, "", err
	}
	servers = append(servers, mesh)
	if o.istio != "" {
		istio, err := start("istio", []string{o.istio, "-port", strconv.Itoa(ports[6]), "-metrics-port", strconv.Itoa(ports[7]),
			"-cert-dir", o.certDir, "-config-dir", o.istioConfig, "-gc-percent", gcTarget}, []string{"ENABLE_NATIVE_SIDECARS=true"}, ports[6], ports[7])
		if err != nil {
			stopAll()
			return nil, "", err
		}
		servers = append(servers, istio)
	}
	for i, v := range variants {
		p := ports[8+2*i:]
		s, err := startMeshinject(o, v.name, v.binary, p[0], p[1], 0, 0)
		if err != nil {
			stopAll()
			return nil, "", err
		}
		s.variant = true
		servers = append(servers, s)
	}
	return servers, "http://127.0.0.1:" + strconv.Itoa(ports[5]), nil
}

// startMeshinject runs binary's serve as the server name, with health on
// healthPort and, when profiling and pprofPort is set, pprof on pprofPort.
func startMeshinject(o options, name, binary string, port, metricsPort, healthPort, pprofPort int) (*server, error) {
	if healthPort == 0 {
		var err error
		if healthPort, err = proc.FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{binary, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--metrics-addr", "127.0.0.1:" + strconv.Itoa(metricsPort),
		"--health-addr", "127.0.0.1:" + strconv.Itoa(healthPort), "--cert-dir", o.certDir, "--log-level", "error", "--gc-percent", gcTarget}
	if o.profile != "" && pprofPort != 0 {
		args = append(args, "--pprof-addr", "127.0.0.1:"+strconv.Itoa(pprofPort))
	}
	if o.memoryLimit != "" {
		args = append(args, "--memory-limit", o.memoryLimit)
	}
	return start(name, args, nil, port, metricsPort)
}

// compare is one -compare entry: a meshinject binary measured beside the
// one under test, under its own name.
type compare struct{ name, binary string }

// comparesOf parses -compare: comma-separated NAME=BINARY pairs.
func comparesOf(s string) ([]compare, error) {
	var out []compare
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, bin, ok := strings.Cut(kv, "=")
		if !ok || name == "" || bin == "" || name == "meshinject" || name == "floor" || name == "istio" {
			return nil, fmt.Errorf("-compare %q: want NAME=BINARY pairs, NAME not floor, meshinject or istio", s)
		}
		out = append(out, compare{name, bin})
	}
	return out, nil
}
