package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"istio.io/api/annotation"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

	"github.com/meshinject/meshinject/internal/jsontree"
)

// Uninject removes an injection from pod, in place: the containers,
// volumes and pull secrets its status annotation lists, the user's own
// container definitions put back, rewritten probes restored, and the labels,
// annotations and fields injection changed restored. A pod without the
// status annotation is left unchanged. For a pod injected by meshinject,
// Uninject(Inject(x)) equals x.
func Uninject(pod *corev1.Pod) error {
	raw, ok := pod.Annotations[AnnotationStatus]
	if !ok {
		return nil
	}
	var st Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return fieldError(AnnotationStatus, raw, err)
	}
	var rec record
	r, recorded := pod.Annotations[annotationUninject]
	if recorded {
		if err := json.Unmarshal([]byte(r), &rec); err != nil {
			return fieldError(annotationUninject, r, err)
		}
	} else {
		// Injected by Istio: no record, so what Istio adds is recognised.
		uninjectIstioMetadata(pod, st)
	}
	var ov overrides
	if o, ok := pod.Annotations[annotationOverrides]; ok {
		if err := json.Unmarshal([]byte(o), &ov); err != nil {
			return fieldError(annotationOverrides, o, err)
		}
	}

	if err := restoreProbes(pod, rec.PortNames); err != nil {
		return err
	}

	// Overrides are recorded without image "auto" (Istio's format): a user
	// container with no image had "auto".
	for _, list := range [][]corev1.Container{ov.Containers, ov.InitContainers} {
		for i := range list {
			if list[i].Image == "" {
				list[i].Image = autoImage
			}
		}
	}
	// A user's istio-proxy made a native sidecar goes back to containers
	// (Istio records it under initContainers and nothing else says where it
	// was; a user's proxy customisation is declared in containers).
	for i := 0; i < len(ov.InitContainers); i++ {
		c := ov.InitContainers[i]
		_, fromContainers := rec.Positions["containers/"+c.Name]
		if !recorded && c.Name == ProxyContainerName {
			fromContainers = true
		}
		if fromContainers {
			if _, wasInit := rec.Positions["initContainers/"+c.Name]; !wasInit {
				ov.Containers = append(ov.Containers, c)
				ov.InitContainers = slices.Delete(ov.InitContainers, i, i+1)
				i--
			}
		}
	}
	pod.Spec.InitContainers = restoreContainers(removeContainers(pod.Spec.InitContainers, st.InitContainers), ov.InitContainers, rec.Positions, "initContainers/")
	pod.Spec.Containers = restoreContainers(removeContainers(pod.Spec.Containers, st.Containers), ov.Containers, rec.Positions, "containers/")
	pod.Spec.Volumes = removeNamed(pod.Spec.Volumes, st.Volumes, func(v *corev1.Volume) string { return v.Name })
	pod.Spec.ImagePullSecrets = removeNamed(pod.Spec.ImagePullSecrets, st.ImagePullSecrets, func(r *corev1.LocalObjectReference) string { return r.Name })

	if err := restoreFields(&pod.Spec, rec.Spec, "spec"); err != nil {
		return err
	}
	if err := restoreFields(&pod.ObjectMeta, rec.Metadata, "metadata"); err != nil {
		return err
	}
	pod.Labels = restoreMap(pod.Labels, rec.Labels)
	pod.Annotations = restoreMap(pod.Annotations, rec.Annotations)
	for k := range internalAnnotations {
		delete(pod.Annotations, k)
	}
	if len(pod.Labels) == 0 {
		pod.Labels = nil
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	return nil
}

func removeContainers(list []corev1.Container, names []string) []corev1.Container {
	return removeNamed(list, names, func(c *corev1.Container) string { return c.Name })
}

func removeNamed[T any](list []T, names []string, name func(*T) string) []T {
	if len(names) == 0 {
		return list
	}
	out := list[:0:0]
	for i := range list {
		if !slices.Contains(names, name(&list[i])) {
			out = append(out, list[i])
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// restoreContainers puts the user's own container definitions back at their
// recorded positions.
func restoreContainers(list, users []corev1.Container, positions map[string]int, prefix string) []corev1.Container {
	if len(users) == 0 {
		return list
	}
	sort.SliceStable(users, func(i, j int) bool {
		return positionOf(positions, prefix+users[i].Name) < positionOf(positions, prefix+users[j].Name)
	})
	for _, u := range users {
		i := positionOf(positions, prefix+u.Name)
		if i > len(list) {
			i = len(list)
		}
		list = append(list[:i], append([]corev1.Container{u}, list[i:]...)...)
	}
	return list
}

func positionOf(positions map[string]int, key string) int {
	if i, ok := positions[key]; ok {
		return i
	}
	return int(^uint(0) >> 1)
}

// restoreFields sets the recorded fields of part (the pod's spec or
// metadata) back to their values before injection (null: unset).
func restoreFields[T any](part *T, fields map[string]json.RawMessage, name string) error {
	if len(fields) == 0 {
		return nil
	}
	tree, err := jsontree.Value(part)
	if err != nil {
		return err
	}
	m, _ := tree.(map[string]any)
	for k, raw := range fields {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("restore %s.%s: %w", name, k, err)
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var out T
	strict, err := kjson.UnmarshalStrict(b, &out, kjson.DisallowUnknownFields)
	if err == nil && len(strict) > 0 {
		err = strict[0]
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	*part = out
	return nil
}

// uninjectIstioMetadata removes the labels and annotations Istio's
// injector adds from a pod it injected (one without meshinject's record),
// while the injected proxy is still there to read: each only where its
// value is the one Istio would have written, so a user's own setting stays.
// The app's Prometheus annotations come back from the proxy's
// ISTIO_PROMETHEUS_ANNOTATIONS.
func uninjectIstioMetadata(pod *corev1.Pod, st Status) {
	env := map[string]string{}
	if p := findProxy(pod); p != nil {
		for _, e := range p.Env {
			env[e.Name] = e.Value
		}
	}
	a, l := pod.Annotations, pod.Labels
	deleteIf := func(m map[string]string, key, value string) {
		if v, ok := m[key]; ok && v == value {
			delete(m, key)
		}
	}
	deleteIf(l, "security.istio.io/tlsMode", "istio")
	deleteIf(l, "networking.istio.io/tunnel", "http")
	if n, ok := env["ISTIO_META_NETWORK"]; ok {
		deleteIf(l, networkLabel, n)
	}
	workload := env["ISTIO_META_WORKLOAD_NAME"]
	name := cmp.Or(l["app.kubernetes.io/name"], l["app"], workload)
	if len(name) > 63 {
		name = name[:63]
	}
	deleteIf(l, "service.istio.io/canonical-name", strings.Trim(name, "-_."))
	deleteIf(l, "service.istio.io/canonical-name", name)
	deleteIf(l, "service.istio.io/canonical-revision", cmp.Or(l["app.kubernetes.io/version"], l["version"], "latest"))

	deleteIf(a, annotation.IoIstioRev.Name, cmp.Or(st.Revision, "default"))
	if first := firstUserContainer(pod); first != "" {
		deleteIf(a, "kubectl.kubernetes.io/default-container", first)
		deleteIf(a, "kubectl.kubernetes.io/default-logs-container", first)
	}
	if slices.Contains(st.Volumes, "istio-xds") || slices.Contains(st.Volumes, "grpc-io-proxyless-bootstrap") {
		deleteIf(a, annotation.SidecarRewriteAppHTTPProbers.Name, "false")
	}
	restorePrometheus(a, env["ISTIO_PROMETHEUS_ANNOTATIONS"])
	if port := env["ENVOY_SECURE_MERGED_METRICS_PORT"]; port != "" {
		deleteIf(a, securePortAnnotation, port)
	}
	if slices.Contains(st.InitContainers, "istio-validation") {
		// With CNI, Istio's template writes the traffic settings as
		// annotations for the CNI plugin; the defaults go.
		deleteIf(a, annotation.SidecarInterceptionMode.Name, "REDIRECT")
		deleteIf(a, annotation.SidecarTrafficIncludeInboundPorts.Name, "*")
		deleteIf(a, annotation.SidecarTrafficIncludeOutboundIPRanges.Name, "*")
		deleteIf(a, annotation.SidecarTrafficExcludeInboundPorts.Name, cmp.Or(a[annotation.SidecarStatusPort.Name], "15020"))
		if n, ok := a["k8s.v1.cni.cncf.io/networks"]; ok {
			a["k8s.v1.cni.cncf.io/networks"] = removeMultusNetwork(n, "default/istio-cni")
			deleteIf(a, "k8s.v1.cni.cncf.io/networks", "")
		}
	}
}

// removeMultusNetwork undoes templates.AppendMultusNetwork for network.
func removeMultusNetwork(value, network string) string {
	ns, name, _ := strings.Cut(network, "/")
	if i := strings.LastIndex(value, "]"); i >= 0 {
		for _, item := range []string{fmt.Sprintf(`, {"name": %q, "namespace": %q}`, name, ns), fmt.Sprintf(`{"name": %q, "namespace": %q}`, name, ns)} {
			if j := strings.LastIndex(value, item); j >= 0 {
				return value[:j] + value[j+len(item):]
			}
		}
		return value
	}
	var keep []string
	for _, n := range strings.Split(value, ",") {
		if t := strings.TrimSpace(n); t != network && t != "" {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, ", ")
}

// firstUserContainer is the first container but the proxy, which Istio's
// templates name as the default container.
func firstUserContainer(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		if c.Name != ProxyContainerName {
			return c.Name
		}
	}
	return ""
}

// restorePrometheus puts back the app's Prometheus annotations that the
// merge moved into ISTIO_PROMETHEUS_ANNOTATIONS; without it, the agent's
// own annotations are removed.
func restorePrometheus(a map[string]string, raw string) {
	agent := a["prometheus.io/path"] == "/stats/prometheus" && a["prometheus.io/scrape"] == "true"
	if !agent {
		return
	}
	var sc scrapeConfig
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &sc); err != nil {
			return
		}
	}
	if len(sc.Targets) > 0 {
		// port and path were copied from the first target
		sc.Port, sc.Path = "", ""
	}
	for key, v := range map[string]string{"prometheus.io/scrape": sc.Scrape, "prometheus.io/path": sc.Path, "prometheus.io/port": sc.Port} {
		if v == "" {
			delete(a, key)
		} else {
			a[key] = v
		}
	}
	if len(sc.Targets) > 0 {
		parts := make([]string, len(sc.Targets))
		for i, t := range sc.Targets {
			parts[i] = t.Port + ":" + t.Path
		}
		a["prometheus.istio.io/scrape-targets"] = strings.Join(parts, ",")
	}
}
