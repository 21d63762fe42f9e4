package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshinject/meshinject/templates"
)

// ProxyContainerName is the name of the injected proxy container.
const ProxyContainerName = "istio-proxy"

// fieldEnv is a downward-API variable written as Istio's templates write
// it: no apiVersion (the API server defaults it to v1).
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// divisorOne is the divisor Istio's templates write on resource variables.
var divisorOne = resource.MustParse("1")

func resourceEnv(name, res string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: res, Divisor: divisorOne}}}
}

// envShape is which of Istio's templates an environment follows.
type envShape int

const (
	sidecarShape envShape = iota
	gatewayShape
	agentShape
)

// proxyEnv builds istio-proxy's environment in the order of Istio's
// sidecar template or, for gateway, of its gateway template (which has no
// localhost-probe or OpenTelemetry variables, lists the app containers
// later and takes the interception mode from the ProxyConfig alone).
func (e *Engine) proxyEnv(pod *corev1.Pod, s *settings, extra map[string]string, gateway bool) []corev1.EnvVar {
	if gateway {
		return e.buildEnv(pod, s, extra, gatewayShape)
	}
	return e.buildEnv(pod, s, extra, sidecarShape)
}

// grpcAgentEnv is the agent's environment in Istio's grpc-agent template:
// the sidecar's without Envoy's resource limits, interception mode,
// bootstrap override and OpenTelemetry attributes, with the agent's
// generator and certificate output first and DNS capture and Envoy off.
func (e *Engine) grpcAgentEnv(pod *corev1.Pod, s *settings, extra map[string]string) []corev1.EnvVar {
	env := []corev1.EnvVar{strEnv("ISTIO_META_GENERATOR", "grpc"), strEnv("OUTPUT_CERTS", "/var/lib/istio/data")}
	env = append(env, e.buildEnv(pod, s, extra, agentShape)...)
	return append(env, strEnv("ISTIO_META_DNS_CAPTURE", "false"), strEnv("DISABLE_ENVOY", "true"))
}

func strEnv(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func (e *Engine) buildEnv(pod *corev1.Pod, s *settings, extra map[string]string, shape envShape) []corev1.EnvVar {
	env := make([]corev1.EnvVar, 0, 26+len(s.proxyConfig.GetProxyMetadata()))
	env = e.podEnv(env, pod, s, shape)
	env = e.clusterPart(env, s, extra, shape)
	env = e.identityEnv(env, pod, s, shape)
	md := s.proxyConfig.GetProxyMetadata()
	for _, k := range slices.Sorted(maps.Keys(md)) {
		env = append(env, strEnv(k, md[k]))
	}
	return env
}

// podEnv appends the variables from the CA address to the Go runtime's
// limits and the compliance policy.
func (e *Engine) podEnv(env []corev1.EnvVar, pod *corev1.Pod, s *settings, shape envShape) []corev1.EnvVar {
	cfg, g := e.cfg, &e.cfg.Typed.Global
	caAddr := g.CAAddress
	if caAddr == "" {
		host := "istiod"
		if cfg.Revision != "" {
			host += "-" + cfg.Revision
		}
		caAddr = host + "." + cmp.Or(g.IstioNamespace, "istio-system") + ".svc:15012"
	}
	if shape != gatewayShape && cfg.Mesh.GetInboundTrafficPolicy().GetMode() == meshv1alpha1.MeshConfig_InboundTrafficPolicy_LOCALHOST {
		env = append(env, strEnv("REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "true"))
	}
	env = append(env,
		strEnv("PILOT_CERT_PROVIDER", cmp.Or(g.PilotCertProvider, "istiod")),
		strEnv("CA_ADDR", caAddr),
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("HOST_IP", "status.hostIP"),
	)
	if shape != agentShape {
		env = append(env, resourceEnv("ISTIO_CPU_LIMIT", "limits.cpu"))
	}
	env = append(env, strEnv("PROXY_CONFIG", e.proxyConfigJSON(s)), strEnv("ISTIO_META_POD_PORTS", podPorts(pod)))
	apps := strEnv("ISTIO_META_APP_CONTAINERS", appContainers(pod))
	if shape != gatewayShape {
		env = append(env, apps)
	}
	if shape != agentShape {
		env = append(env, resourceEnv("GOMEMLIMIT", "limits.memory"))
		if !cfg.Follows(32) {
			// 1.32 leaves GOMAXPROCS to the Go runtime, which reads
			// the container's CPU limit itself.
			env = append(env, resourceEnv("GOMAXPROCS", "limits.cpu"))
		}
		if p := cfg.CompliancePolicy; p != "" {
			env = append(env, strEnv("COMPLIANCE_POLICY", p))
			if p == "fips-140-3" && cfg.Follows(31) {
				env = append(env, strEnv("GODEBUG", "fips140=only"))
			}
		}
	}
	if shape == gatewayShape {
		env = append(env, apps)
	}
	return env
}

// clusterPart appends the cluster, node, interception mode and network.
func (e *Engine) clusterPart(env []corev1.EnvVar, s *settings, extra map[string]string, shape envShape) []corev1.EnvVar {
	g := &e.cfg.Typed.Global
	clusterID := cmp.Or(extra["ISTIO_META_CLUSTER_ID"], g.MultiCluster.ClusterName, "Kubernetes")
	network := cmp.Or(extra["ISTIO_META_NETWORK"], g.Network)
	env = append(env, strEnv("ISTIO_META_CLUSTER_ID", clusterID), fieldEnv("ISTIO_META_NODE_NAME", "spec.nodeName"))
	switch shape {
	case sidecarShape:
		env = append(env, strEnv("ISTIO_META_INTERCEPTION_MODE", s.InterceptionMode))
	case gatewayShape:
		env = append(env, strEnv("ISTIO_META_INTERCEPTION_MODE", s.proxyConfig.GetInterceptionMode().String()))
	}
	if network != "" {
		env = append(env, strEnv("ISTIO_META_NETWORK", network))
	}
	return env
}

// identityEnv appends the workload, owner, bootstrap override, mesh and
// trust domain, and the OpenTelemetry attributes.
func (e *Engine) identityEnv(env []corev1.EnvVar, pod *corev1.Pod, s *settings, shape envShape) []corev1.EnvVar {
	cfg, g := e.cfg, &e.cfg.Typed.Global
	trustDomain := cmp.Or(cfg.Mesh.GetTrustDomain(), g.TrustDomain)
	meshID := cmp.Or(g.MeshID, trustDomain)
	workload := s.workload.Name
	if shape == sidecarShape {
		workload = cmp.Or(pod.Labels["service.istio.io/workload-name"], workload)
	}
	if workload != "" {
		env = append(env, strEnv("ISTIO_META_WORKLOAD_NAME", workload))
	}
	if s.workload.APIVersion != "" && s.workload.Name != "" {
		env = append(env, strEnv("ISTIO_META_OWNER", ownerURI(s.workload, s.namespace)))
	}
	if s.BootstrapOverride != "" && shape != agentShape {
		env = append(env, strEnv("ISTIO_BOOTSTRAP_OVERRIDE", bootstrapOverrideDir+"/custom_bootstrap.json"))
	}
	if meshID != "" {
		env = append(env, strEnv("ISTIO_META_MESH_ID", meshID))
	}
	if trustDomain != "" {
		env = append(env, strEnv("TRUST_DOMAIN", trustDomain))
	}
	if shape == sidecarShape {
		env = append(env, s.datadogEnv...)
	}
	if shape == sidecarShape {
		if v := templates.OtelResourceAttributes(cfg.Mesh, pod.Annotations, pod.Labels, s.namespace, pod.Spec.Containers); v != "" {
			env = append(env, strEnv("OTEL_RESOURCE_ATTRIBUTES", v))
		}
	}
	return env
}

// clusterEnv is what Istio's injector overwrites in the proxy's environment
// after rendering: the webhook path's variables, the cluster ID (values,
// else the path) and the network (values, else the path, else the pod's
// topology.istio.io/network label), whichever are set.
func (e *Engine) clusterEnv(pod *corev1.Pod, extra map[string]string) map[string]string {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]string{}
	}
	g := &e.cfg.Typed.Global
	if _, ok := out["ISTIO_META_CLUSTER_ID"]; !ok && g.MultiCluster.ClusterName != "" {
		out["ISTIO_META_CLUSTER_ID"] = g.MultiCluster.ClusterName
	}
	if _, ok := out["ISTIO_META_NETWORK"]; !ok && g.Network != "" {
		out["ISTIO_META_NETWORK"] = g.Network
	}
	if n, ok := pod.Labels[networkLabel]; ok {
		out["ISTIO_META_NETWORK"] = n
	}
	for k, v := range out {
		if v == "" {
			delete(out, k)
		}
	}
	return out
}

// networkLabel is the pod label naming its network.
const networkLabel = "topology.istio.io/network"

// overwriteClusterEnv moves the variables of env to the end of the proxy's
// environment, sorted by name, with their values, and labels the pod with
// its network, as Istio's injector does after rendering any template.
func overwriteClusterEnv(pod *corev1.Pod, env map[string]string) {
	if len(env) == 0 {
		return
	}
	if n, ok := env["ISTIO_META_NETWORK"]; ok {
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[networkLabel] = n
	}
	proxy := findProxy(pod)
	if proxy == nil {
		return
	}
	proxy.Env = slices.DeleteFunc(proxy.Env, func(v corev1.EnvVar) bool { _, ok := env[v.Name]; return ok })
	for _, k := range slices.Sorted(maps.Keys(env)) {
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
}

// proxyConfigJSON is PROXY_CONFIG: the pod's ProxyConfig without the
// fields equal to Istio's defaults, as JSON and a newline.
func (e *Engine) proxyConfigJSON(s *settings) string {
	if !s.proxyConfigAnnotated {
		return e.meshProxyConfig
	}
	return templates.ProtoToJSON(s.proxyConfig, e.cfg.DefaultProxyConfig) + "\n"
}

// podPorts is ISTIO_META_POD_PORTS: every port of every container, as a
// JSON array of ContainerPort objects laid out as Istio's template lays
// them out (one per line, indented, a comma leading each but the first).
func podPorts(pod *corev1.Pod) string {
	var b strings.Builder
	n := 0
	for i := range pod.Spec.Containers {
		n += len(pod.Spec.Containers[i].Ports)
	}
	b.Grow(64*n + 4) // most ports' JSON fits: one allocation, not a quarter more at a time
	b.WriteString("[")
	first := true
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			j, err := json.Marshal(p)
			if err != nil {
				continue
			}
			b.WriteString("\n    ")
			if !first {
				b.WriteString(",")
			}
			b.Write(j)
			first = false
		}
	}
	b.WriteString("\n]")
	return b.String()
}

func appContainers(pod *corev1.Pod) string {
	names := make([]string, 0, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		if n := pod.Spec.Containers[i].Name; n != ProxyContainerName {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// datadogEnv reads apm.datadoghq.com/env: a JSON object of scalars, as
// variables sorted by name, each value printed as Istio's template prints
// it (strings verbatim, numbers and booleans in Go's notation).
func datadogEnv(raw string) ([]corev1.EnvVar, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("want a JSON object of variables: %w", err)
	}
	env := make([]corev1.EnvVar, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := m[k].(type) {
		case string:
			env = append(env, strEnv(k, v))
		case float64, bool:
			env = append(env, strEnv(k, fmt.Sprint(v)))
		default:
			return nil, fmt.Errorf("variable %q: want a string, number or boolean", k)
		}
	}
	return env, nil
}
