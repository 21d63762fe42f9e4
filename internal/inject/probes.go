package inject

import (
	"encoding/json"
	"fmt"
	"strings"

	"istio.io/api/annotation"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshinject/meshinject/internal/validate"
)

// prober is one entry of ISTIO_KUBE_APP_PROBERS, as pilot-agent reads it:
// the app's original check, with named ports resolved.
type prober struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// rewriteProbes sends the app's HTTP, TCP and gRPC probes and HTTP/TCP
// lifecycle hooks through pilot-agent's status port: with mTLS on, the
// kubelet cannot reach the app directly. The originals go into the proxy's
// ISTIO_KUBE_APP_PROBERS.
func rewriteProbes(pod *corev1.Pod, s *settings, rec *record, warnings *[]string) error {
	enabled := s.rewriteProbes
	if v, ok := pod.Annotations[annotation.SidecarRewriteAppHTTPProbers.Name]; ok {
		b, err := validate.Bool(v)
		if err != nil {
			return fieldError(annotation.SidecarRewriteAppHTTPProbers.Name, v, err)
		}
		enabled = b
	}
	if !enabled || s.StatusPort == 0 {
		return nil
	}
	proxy := findProxy(pod)
	if proxy == nil {
		return nil
	}
	statusPort := intstr.FromInt32(s.StatusPort)
	probers := map[string]*prober{}
	for _, c := range probedContainers(pod) {
		probe := func(p **corev1.Probe, kind string) {
			if *p == nil {
				return
			}
			h := &(*p).ProbeHandler
			pr, ok := toProber(c, h.HTTPGet, h.TCPSocket, h.GRPC, (*p).TimeoutSeconds, warnings)
			if !ok {
				return
			}
			path := "/app-health/" + c.Name + "/" + kind
			probers[path] = pr
			rec.portName(path, h.HTTPGet, h.TCPSocket)
			np := **p
			np.ProbeHandler = corev1.ProbeHandler{HTTPGet: agentGet(h.HTTPGet, path, statusPort)}
			*p = &np
		}
		probe(&c.ReadinessProbe, "readyz")
		probe(&c.LivenessProbe, "livez")
		probe(&c.StartupProbe, "startupz")
		if c.Lifecycle != nil {
			lc := *c.Lifecycle
			changed := false
			hook := func(h **corev1.LifecycleHandler, kind string) {
				if *h == nil {
					return
				}
				pr, ok := toProber(c, (*h).HTTPGet, (*h).TCPSocket, nil, 0, warnings)
				if !ok {
					return
				}
				path := "/app-lifecycle/" + c.Name + "/" + kind
				probers[path] = pr
				rec.portName(path, (*h).HTTPGet, (*h).TCPSocket)
				*h = &corev1.LifecycleHandler{HTTPGet: agentGet((*h).HTTPGet, path, statusPort)}
				changed = true
			}
			hook(&lc.PreStop, "prestopz")
			hook(&lc.PostStart, "poststartz")
			if changed {
				c.Lifecycle = &lc
			}
		}
	}
	if len(probers) == 0 {
		return nil
	}
	b, err := json.Marshal(probers) // map keys marshal sorted
	if err != nil {
		return err
	}
	proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_KUBE_APP_PROBERS", Value: string(b)})
	return nil
}

func toProber(c *corev1.Container, http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction, grpc *corev1.GRPCAction, timeout int32, warnings *[]string) (*prober, bool) {
	pr := &prober{TimeoutSeconds: timeout}
	switch {
	case http != nil:
		h := *http
		port, ok := resolvePort(c, h.Port, warnings)
		if !ok {
			return nil, false
		}
		h.Port = port
		pr.HTTPGet = &h
	case tcp != nil:
		t := *tcp
		port, ok := resolvePort(c, t.Port, warnings)
		if !ok {
			return nil, false
		}
		t.Port = port
		pr.TCPSocket = &t
	case grpc != nil:
		g := *grpc
		pr.GRPC = &g
	default:
		return nil, false
	}
	return pr, true
}

// resolvePort turns a named port into the container's port number.
func resolvePort(c *corev1.Container, p intstr.IntOrString, warnings *[]string) (intstr.IntOrString, bool) {
	if p.Type == intstr.Int {
		return p, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return intstr.FromInt32(cp.ContainerPort), true
		}
	}
	*warnings = append(*warnings, fmt.Sprintf("container %s: probe port %q names no container port; probe left unchanged", c.Name, p.StrVal))
	return p, false
}

// portName records the port name of an original check that used one.
func (r *record) portName(path string, http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) {
	var p intstr.IntOrString
	switch {
	case http != nil:
		p = http.Port
	case tcp != nil:
		p = tcp.Port
	default:
		return
	}
	if p.Type != intstr.String {
		return
	}
	if r.PortNames == nil {
		r.PortNames = map[string]string{}
	}
	r.PortNames[path] = p.StrVal
}

// restoreProbes puts back the app checks that rewriteProbes sent through
// the agent, from the proxy's ISTIO_KUBE_APP_PROBERS (and the recorded port
// names). It works on pods injected by Istio too.
func restoreProbes(pod *corev1.Pod, portNames map[string]string) error {
	proxy := findProxy(pod)
	if proxy == nil {
		return nil
	}
	var raw string
	for _, e := range proxy.Env {
		if e.Name == "ISTIO_KUBE_APP_PROBERS" {
			raw = e.Value
		}
	}
	if raw == "" {
		return nil
	}
	probers := map[string]*prober{}
	if err := json.Unmarshal([]byte(raw), &probers); err != nil {
		return fmt.Errorf("proxy env ISTIO_KUBE_APP_PROBERS: %w", err)
	}
	for path, pr := range probers {
		if pr == nil {
			continue
		}
		kind, name, check, ok := parseProbePath(path)
		if !ok {
			continue
		}
		var c *corev1.Container
		if i := containerIndex(pod.Spec.Containers, name); i >= 0 {
			c = &pod.Spec.Containers[i]
		} else if i := containerIndex(pod.Spec.InitContainers, name); i >= 0 {
			c = &pod.Spec.InitContainers[i]
		} else {
			continue
		}
		if n, ok := portNames[path]; ok {
			switch {
			case pr.HTTPGet != nil:
				pr.HTTPGet.Port = intstr.FromString(n)
			case pr.TCPSocket != nil:
				pr.TCPSocket.Port = intstr.FromString(n)
			}
		}
		if kind == "app-health" {
			p := map[string]**corev1.Probe{"readyz": &c.ReadinessProbe, "livez": &c.LivenessProbe, "startupz": &c.StartupProbe}[check]
			if p == nil || *p == nil {
				continue
			}
			np := **p
			np.ProbeHandler = corev1.ProbeHandler{HTTPGet: pr.HTTPGet, TCPSocket: pr.TCPSocket, GRPC: pr.GRPC}
			*p = &np
			continue
		}
		if c.Lifecycle == nil {
			continue
		}
		lc := *c.Lifecycle
		h := map[string]**corev1.LifecycleHandler{"prestopz": &lc.PreStop, "poststartz": &lc.PostStart}[check]
		if h == nil {
			continue
		}
		*h = &corev1.LifecycleHandler{HTTPGet: pr.HTTPGet, TCPSocket: pr.TCPSocket}
		c.Lifecycle = &lc
	}
	return nil
}

// parseProbePath splits "/app-health/<container>/<check>".
func parseProbePath(path string) (kind, container, check string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) != 3 || (parts[0] != "app-health" && parts[0] != "app-lifecycle") {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// agentGet is the HTTP action that sends a probe or hook to the agent: an
// HTTP action keeps its host and headers with the agent's path and port
// (HTTPS becomes HTTP: the agent speaks HTTPS to the app), anything else
// becomes a plain GET of the agent's path.
func agentGet(orig *corev1.HTTPGetAction, path string, port intstr.IntOrString) *corev1.HTTPGetAction {
	if orig == nil {
		return &corev1.HTTPGetAction{Path: path, Port: port}
	}
	g := orig.DeepCopy()
	g.Path, g.Port = path, port
	if g.Scheme == corev1.URISchemeHTTPS {
		g.Scheme = corev1.URISchemeHTTP
	}
	return g
}

// probedContainers are the containers whose probes and hooks go through
// the agent: every one but the proxy. As Istio does, init containers are
// included (only native sidecars, restartPolicy Always, can have probes).
func probedContainers(pod *corev1.Pod) []*corev1.Container {
	all := make([]*corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name != ProxyContainerName {
				all = append(all, &list[i])
			}
		}
	}
	return all
}
