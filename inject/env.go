package inject

import (
	"cmp"
	"maps"
	"slices"
	"strings"

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

// proxyEnv builds istio-proxy's environment in Istio's order.
func (e *Engine) proxyEnv(pod *corev1.Pod, s *Settings, extra map[string]string) []corev1.EnvVar {
	cfg, g := e.cfg, &e.cfg.Typed.Global
	caAddr := g.CAAddress
	if caAddr == "" {
		host := "istiod"
		if cfg.Revision != "" {
			host += "-" + cfg.Revision
		}
		caAddr = host + "." + cmp.Or(g.IstioNamespace, "istio-system") + ".svc:15012"
	}
	clusterID := cmp.Or(g.MultiCluster.ClusterName, "Kubernetes")
	network := g.Network
	if v, ok := extra["ISTIO_META_CLUSTER_ID"]; ok {
		clusterID = v
	}
	if v, ok := extra["ISTIO_META_NETWORK"]; ok {
		network = v
	}
	trustDomain := cmp.Or(g.TrustDomain, cfg.Mesh.GetTrustDomain())
	meshID := cmp.Or(g.MeshID, trustDomain)

	env := make([]corev1.EnvVar, 0, 24+len(s.proxyConfig.GetProxyMetadata())+len(extra))
	env = append(env,
		corev1.EnvVar{Name: "PILOT_CERT_PROVIDER", Value: cmp.Or(g.PilotCertProvider, "istiod")},
		corev1.EnvVar{Name: "CA_ADDR", Value: caAddr},
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("HOST_IP", "status.hostIP"),
		resourceEnv("ISTIO_CPU_LIMIT", "limits.cpu"),
		corev1.EnvVar{Name: "PROXY_CONFIG", Value: e.proxyConfigJSON(s)},
		corev1.EnvVar{Name: "ISTIO_META_POD_PORTS", Value: podPorts(pod)},
		corev1.EnvVar{Name: "ISTIO_META_APP_CONTAINERS", Value: appContainers(pod)},
		resourceEnv("GOMEMLIMIT", "limits.memory"),
		resourceEnv("GOMAXPROCS", "limits.cpu"),
		corev1.EnvVar{Name: "ISTIO_META_CLUSTER_ID", Value: clusterID},
		fieldEnv("ISTIO_META_NODE_NAME", "spec.nodeName"),
		corev1.EnvVar{Name: "ISTIO_META_INTERCEPTION_MODE", Value: s.InterceptionMode},
	)
	if network != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_NETWORK", Value: network})
	}
	env = append(env,
		corev1.EnvVar{Name: "ISTIO_META_WORKLOAD_NAME", Value: cmp.Or(pod.Labels["service.istio.io/workload-name"], s.workload.Name)},
		corev1.EnvVar{Name: "ISTIO_META_OWNER", Value: ownerURI(s.workload, s.namespace)},
	)
	if s.BootstrapOverride != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_BOOTSTRAP_OVERRIDE", Value: bootstrapOverrideDir + "/custom_bootstrap.json"})
	}
	env = append(env,
		corev1.EnvVar{Name: "ISTIO_META_MESH_ID", Value: meshID},
		corev1.EnvVar{Name: "TRUST_DOMAIN", Value: trustDomain},
	)
	if v := templates.OtelResourceAttributes(cfg.Mesh, pod.Annotations, pod.Labels, s.namespace, pod.Spec.Containers); v != "" {
		env = append(env, corev1.EnvVar{Name: "OTEL_RESOURCE_ATTRIBUTES", Value: v})
	}
	md := s.proxyConfig.GetProxyMetadata()
	for _, k := range slices.Sorted(maps.Keys(md)) {
		env = append(env, corev1.EnvVar{Name: k, Value: md[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if k == "ISTIO_META_CLUSTER_ID" || k == "ISTIO_META_NETWORK" {
			continue
		}
		env = append(env, corev1.EnvVar{Name: k, Value: extra[k]})
	}
	return env
}

// proxyConfigJSON is PROXY_CONFIG: the pod's ProxyConfig without the
// fields equal to Istio's defaults, as JSON and a newline.
func (e *Engine) proxyConfigJSON(s *Settings) string {
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
	b.WriteString("[")
	first := true
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			j, err := marshalJSON(p)
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
