package inject

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Prometheus annotation keys, as Prometheus sees them after sanitising
// (every character outside [A-Za-z0-9_] becomes '_'), so prometheus.io/port,
// prometheus.io.port and prometheus-io/port are the same key.
const (
	promScrape  = "prometheus_io_scrape"
	promPort    = "prometheus_io_port"
	promPath    = "prometheus_io_path"
	promTargets = "prometheus_istio_io_scrape_targets"
)

// promCanonical are the spellings that win over sanitised variants.
var promCanonical = map[string]string{
	promScrape: "prometheus.io/scrape", promPort: "prometheus.io/port",
	promPath: "prometheus.io/path", promTargets: "prometheus.istio.io/scrape-targets",
}

// reservedPorts are the data-plane ports pilot-agent refuses to scrape for
// the app, with the reason.
var reservedPorts = map[string]string{
	"15000": "Envoy admin", "15001": "outbound traffic capture", "15004": "pilot debug",
	"15006": "inbound traffic capture", "15008": "HBONE tunnel",
	"15020": "pilot-agent status / merged Prometheus", "15021": "Envoy health",
	"15053": "DNS proxy", "15090": "Envoy Prometheus (already merged)",
}

// scrapeConfig is ISTIO_PROMETHEUS_ANNOTATIONS, as pilot-agent reads it.
type scrapeConfig struct {
	Scrape  string         `json:"scrape"`
	Path    string         `json:"path"`
	Port    string         `json:"port"`
	Targets []scrapeTarget `json:"targets,omitempty"`
}

type scrapeTarget struct {
	Port string `json:"port"`
	Path string `json:"path"`
}

func (c *scrapeConfig) empty() bool {
	return c.Scrape == "" && c.Path == "" && c.Port == "" && len(c.Targets) == 0
}

func sanitizeLabelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// promAnnotations returns the pod's Prometheus annotations by sanitised
// key (the canonical spelling wins over a variant) and every spelling found.
func promAnnotations(pod *corev1.Pod) (map[string]string, []string) {
	vals := map[string]string{}
	var found []string
	for _, k := range slices.Sorted(maps.Keys(pod.Annotations)) {
		if !strings.HasPrefix(strings.ToLower(k), "prometheus") {
			continue
		}
		key := sanitizeLabelName(k)
		if _, ok := promCanonical[key]; !ok {
			continue
		}
		found = append(found, k)
		if _, seen := vals[key]; !seen || k == promCanonical[key] {
			vals[key] = pod.Annotations[k]
		}
	}
	return vals, found
}

// prometheusMerge points Prometheus at pilot-agent's merged metrics
// endpoint, as Istio does: the app's scrape settings move into the proxy's
// ISTIO_PROMETHEUS_ANNOTATIONS and the annotations are replaced by the
// mesh's agent port (the mesh default status port, whatever the pod's) and
// path. Skipped when the app says scrape false, merging is off, or the port
// already is the agent's (the pod was injected before).
func (e *Engine) prometheusMerge(pod *corev1.Pod, s *settings) error {
	if !s.prometheusMerge {
		return nil
	}
	vals, found := promAnnotations(pod)
	if v, ok := vals[promScrape]; ok {
		if b, err := strconv.ParseBool(v); err == nil && !b {
			return nil
		}
	}
	agent := strconv.Itoa(int(e.cfg.Mesh.GetDefaultConfig().GetStatusPort()))
	if p, ok := vals[promPort]; ok && p == agent {
		return nil
	}
	sc := scrapeConfig{Scrape: vals[promScrape], Path: vals[promPath], Port: vals[promPort]}
	if raw, ok := vals[promTargets]; ok {
		targets, err := parseScrapeTargets(raw)
		if err != nil {
			return fieldError(promCanonical[promTargets], raw, err)
		}
		sc.Targets = targets
	}
	field, checks := promCanonical[promPort], []string{sc.Port}
	if len(sc.Targets) > 0 {
		sc.Port, sc.Path = sc.Targets[0].Port, sc.Targets[0].Path
		field, checks = promCanonical[promTargets], nil
		for _, t := range sc.Targets {
			checks = append(checks, t.Port)
		}
	}
	for _, p := range checks {
		if err := checkScrapePort(p, agent); err != nil {
			return fieldError(field, pod.Annotations[field], err)
		}
	}
	if proxy := findProxy(pod); proxy != nil && !sc.empty() {
		b, err := json.Marshal(sc)
		if err != nil {
			return err
		}
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: string(b)})
	}
	for _, k := range found {
		delete(pod.Annotations, k)
	}
	if pod.Annotations == nil { // neither the pod nor a configured template set any
		pod.Annotations = map[string]string{}
	}
	pod.Annotations["prometheus.io/port"] = agent
	pod.Annotations["prometheus.io/path"] = "/stats/prometheus"
	pod.Annotations["prometheus.io/scrape"] = "true"
	return nil
}

// checkScrapePort refuses an app scrape port that is not a port, is the
// agent's own, or is one of the data plane's.
func checkScrapePort(port, agent string) error {
	if port == "" {
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	p := strconv.Itoa(n)
	if p == agent {
		return fmt.Errorf("port %s is the agent's, which serves the merged metrics", port)
	}
	if reason, ok := reservedPorts[p]; ok {
		return fmt.Errorf("port %s is reserved for Istio (%s)", port, reason)
	}
	return nil
}

// parseScrapeTargets reads "port[:path],..." (path default /metrics).
func parseScrapeTargets(raw string) ([]scrapeTarget, error) {
	var out []scrapeTarget
	for _, e := range strings.Split(raw, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		port, path, _ := strings.Cut(e, ":")
		port, path = strings.TrimSpace(port), strings.TrimSpace(path)
		if port == "" {
			return nil, fmt.Errorf("target %q has no port", e)
		}
		if path == "" {
			path = "/metrics"
		}
		out = append(out, scrapeTarget{Port: port, Path: path})
	}
	return out, nil
}

// securePortAnnotation names the proxy's mTLS-protected merged metrics
// port for Prometheus.
const securePortAnnotation = "prometheus.istio.io/secure-port"

// securePrometheusPort sets securePortAnnotation to the proxy's
// ENVOY_SECURE_MERGED_METRICS_PORT (not empty, not 0), as Istio's injector
// does, unless the pod names a secure port already (in any spelling that
// Prometheus reads as the same label).
func securePrometheusPort(pod *corev1.Pod) {
	want := sanitizeLabelName(securePortAnnotation)
	for k := range pod.Annotations {
		if sanitizeLabelName(k) == want {
			return
		}
	}
	proxy := findProxy(pod)
	if proxy == nil {
		return
	}
	for _, env := range proxy.Env {
		if env.Name == "ENVOY_SECURE_MERGED_METRICS_PORT" && env.Value != "" && env.Value != "0" {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[securePortAnnotation] = env.Value
			return
		}
	}
}
