package inject

import (
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
	promScrape = "prometheus_io_scrape"
	promPort   = "prometheus_io_port"
	promPath   = "prometheus_io_path"
)

// scrapeConfig is ISTIO_PROMETHEUS_ANNOTATIONS, as pilot-agent reads it.
type scrapeConfig struct {
	Scrape string `json:"scrape,omitempty"`
	Path   string `json:"path,omitempty"`
	Port   string `json:"port,omitempty"`
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

// prometheusMerge points Prometheus at pilot-agent's merged metrics
// endpoint: the app's own scrape settings move into the proxy's
// ISTIO_PROMETHEUS_ANNOTATIONS and the annotations are replaced by the
// agent's port and path. Skipped when the app says scrape "false" or merging
// is disabled.
func (e *Engine) prometheusMerge(pod *corev1.Pod, s *Settings) {
	if !s.prometheusMerge || s.StatusPort == 0 {
		return
	}
	proxy := findProxy(pod)
	if proxy == nil {
		return
	}
	var sc scrapeConfig
	var found []string
	canonical := map[string]string{promScrape: "prometheus.io/scrape", promPort: "prometheus.io/port", promPath: "prometheus.io/path"}
	for _, k := range slices.Sorted(maps.Keys(pod.Annotations)) {
		if len(k) != len(promScrape) && len(k) != len(promPath) || !strings.EqualFold(k[:len("prometheus")], "prometheus") {
			continue // cannot sanitise to a prometheus_io_* key
		}
		v := pod.Annotations[k]
		key := sanitizeLabelName(k)
		var dst *string
		switch key {
		case promScrape:
			dst = &sc.Scrape
		case promPort:
			dst = &sc.Port
		case promPath:
			dst = &sc.Path
		default:
			continue
		}
		found = append(found, k)
		// The canonical spelling wins over a sanitised variant.
		if *dst == "" || k == canonical[key] {
			*dst = v
		}
	}
	if sc.Scrape == "false" {
		return
	}
	if sc != (scrapeConfig{}) {
		b, err := marshalJSON(sc)
		if err == nil {
			proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: string(b)})
		}
	}
	for _, k := range found {
		delete(pod.Annotations, k)
	}
	pod.Annotations["prometheus.io/scrape"] = "true"
	pod.Annotations["prometheus.io/port"] = strconv.Itoa(int(s.StatusPort))
	pod.Annotations["prometheus.io/path"] = "/stats/prometheus"
}
