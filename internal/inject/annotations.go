package inject

import (
	"fmt"
	"strings"

	"istio.io/api/annotation"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/validate"
)

// annotationRule is one annotation a pod can carry to change its
// injection: its name, the step that reads it, where its value lands and
// the check the value must pass.
type annotationRule struct {
	// Name is the annotation, from istio.io/api/annotation where Istio
	// defines it.
	Name string
	// Step is what reads it: the decision, template selection, the
	// Prometheus merge or a resolve step.
	Step step
	// Effect says where the value lands.
	Effect string
	// Valid says what a value must be.
	Valid string
	// Parse checks a value before any step reads it and returns it typed:
	// the step reads that value (annotations.value), never the string
	// again. Its error is the refusal's reason. nil when the check needs
	// more than the value (the configuration, or other annotations): the
	// step that reads it checks.
	Parse func(string) (any, error)
}

// step names the part of the engine that reads an annotation.
type step string

// The steps that read annotations: the decision, template selection, the
// Prometheus merge, and the resolve steps of settings.go.
const (
	stepDecision     step = "decision"
	stepTemplates    step = "templates"
	stepPrometheus   step = "prometheus"
	stepProxyConfig  step = "proxy config"
	stepInterception step = "interception"
	stepProbes       step = "probes"
	stepImages       step = "images"
	stepAgentArgs    step = "agent arguments"
	stepResources    step = "resources"
	stepTraffic      step = "traffic"
	stepVolumes      step = "volumes"
	stepSecurity     step = "security"
	stepEnvironment  step = "environment"
)

// annotationTable lists every annotation that changes injection. To add
// one: add its row here, read its parsed value in its step (value or one
// of the annotations reader's typed methods), and run
// go test ./internal/inject -run TestAnnotationTable -update to regenerate the
// README's table. TestAnnotationTable checks that the engine reads no
// annotation the table does not list, and FuzzAnnotations fuzzes every
// row.
var annotationTable = []annotationRule{
	{annotation.SidecarInject.Name, stepDecision, "`true` injects, `false` skips; a label of the same name wins", "other values warn and use the default", nil},
	{annotation.InjectTemplates.Name, stepTemplates, "comma-separated templates (aliases expanded), each applied once", "every name is a template of the configuration", nil},
	{annotation.ProxyConfig.Name, stepProxyConfig, "ProxyConfig overlay (`PROXY_CONFIG`, interception, hold, proxyMetadata)", "ProxyConfig YAML/JSON, no negative duration", parsed(config.ParseProxyConfig)},
	{annotation.SidecarInterceptionMode.Name, stepInterception, "`REDIRECT`, `TPROXY` (proxy as uid 0 with NET_ADMIN), `NONE` (no init container)", "one of those", checked(checkInterceptionMode)},
	{annotation.SidecarNativeSidecar.Name, stepInterception, "a native (`true`) or classic (`false`) sidecar", "boolean", parsed(validate.Bool)},
	{annotation.SidecarStatusPort.Name, stepProbes, "agent status port; `0` turns off probes and rewrites", "0-65535", parsed(validate.StatusPort)},
	{annotation.SidecarStatusReadinessInitialDelaySeconds.Name, stepProbes, "the proxy readiness probe's `initialDelaySeconds`", "unsigned integer", parsed(validate.Uint32)},
	{annotation.SidecarStatusReadinessPeriodSeconds.Name, stepProbes, "the proxy readiness probe's `periodSeconds`", "unsigned integer", parsed(validate.Uint32)},
	{annotation.SidecarStatusReadinessFailureThreshold.Name, stepProbes, "the proxy readiness probe's `failureThreshold`", "unsigned integer", parsed(validate.Uint32)},
	{annotation.SidecarRewriteAppHTTPProbers.Name, stepProbes, "rewrite the app's HTTP and gRPC probes through the agent", "boolean", parsed(validate.Bool)},
	{annotation.PrometheusMergeMetrics.Name, stepProbes, "the agent serves the app's metrics merged with Envoy's", "boolean", parsed(validate.Bool)},
	{"prometheus.istio.io/scrape-targets", stepPrometheus, "`port[:path],...` the agent scrapes and merges (path default `/metrics`)", "ports in 1-65535, not the agent's or the data plane's", nil},
	{annotation.SidecarProxyImage.Name, stepImages, "image of the proxy and init containers, verbatim", "non-empty, no spaces", checked(checkImage)},
	{annotation.SidecarProxyImageType.Name, stepImages, "`distroless`/`debug` tag suffix, `default` none", "one of those", checked(checkImageType)},
	{annotation.SidecarLogLevel.Name, stepAgentArgs, "the proxy's log level (`--proxyLogLevel`)", "log level", checked(validate.LogLevel)},
	{annotation.SidecarComponentLogLevel.Name, stepAgentArgs, "the proxy's component log levels (`--proxyComponentLogLevel`)", "`scope:level` list", checked(validate.ScopedLogLevels)},
	{annotation.SidecarAgentLogLevel.Name, stepAgentArgs, "pilot-agent's and istio-iptables' log levels (`--log_output_level`)", "`scope:level` list", checked(validate.ScopedLogLevels)},
	{annotation.SidecarProxyCPU.Name, stepResources, "the proxy's `requests.cpu`; when any of the four resource annotations is set, only the annotated values are used", "non-negative quantity Kubernetes can store", parsed(validate.Quantity)},
	{annotation.SidecarProxyMemory.Name, stepResources, "the proxy's `requests.memory`", "non-negative quantity Kubernetes can store", parsed(validate.Quantity)},
	{annotation.SidecarProxyCPULimit.Name, stepResources, "the proxy's `limits.cpu`", "non-negative quantity Kubernetes can store", parsed(validate.Quantity)},
	{annotation.SidecarProxyMemoryLimit.Name, stepResources, "the proxy's `limits.memory`", "non-negative quantity Kubernetes can store", parsed(validate.Quantity)},
	{annotation.SidecarTrafficIncludeOutboundIPRanges.Name, stepTraffic, "istio-iptables `-i`", "CIDR list or `*`", checked(func(v string) error { return validate.CIDRs(v, true) })},
	{annotation.SidecarTrafficExcludeOutboundIPRanges.Name, stepTraffic, "istio-iptables `-x`", "CIDR list", checked(func(v string) error { return validate.CIDRs(v, false) })},
	{annotation.SidecarTrafficIncludeInboundPorts.Name, stepTraffic, "istio-iptables `-b`", "port list or `*`", checked(func(v string) error { return validate.Ports(v, true) })},
	{annotation.SidecarTrafficExcludeInboundPorts.Name, stepTraffic, "istio-iptables `-d`, after the agent's and Envoy's ports", "port list", checked(func(v string) error { return validate.Ports(v, false) })},
	{annotation.SidecarTrafficIncludeOutboundPorts.Name, stepTraffic, "istio-iptables `-q`", "port list or `*`", checked(func(v string) error { return validate.Ports(v, true) })},
	{annotation.SidecarTrafficExcludeOutboundPorts.Name, stepTraffic, "istio-iptables `-o`", "port list", checked(func(v string) error { return validate.Ports(v, false) })},
	{annotation.SidecarTrafficExcludeInterfaces.Name, stepTraffic, "istio-iptables `-c`", "interface names", checked(validate.Interfaces)},
	{annotation.SidecarTrafficKubevirtInterfaces.Name, stepTraffic, "istio-iptables `-k`", "interface names", checked(validate.Interfaces)},
	{annotation.IoIstioRerouteVirtualInterfaces.Name, stepTraffic, "istio-iptables `-k`, in place of kubevirtInterfaces", "interface names", checked(validate.Interfaces)},
	{annotation.SidecarBootstrapOverride.Name, stepVolumes, "mounts the bootstrap ConfigMap of that name and sets `ISTIO_BOOTSTRAP_OVERRIDE`", "ConfigMap name", checked(checkConfigMapName)},
	{annotation.SidecarUserVolume.Name, stepVolumes, "extra volumes of the pod, mounted by userVolumeMount", "JSON map of name to Volume", parsed(userVolumes)},
	{annotation.SidecarUserVolumeMount.Name, stepVolumes, "extra mounts of the proxy", "JSON map of name to VolumeMount, each with a mountPath", parsed(userMounts)},
	{annotationCapNetBindService, stepSecurity, "`true` adds NET_BIND_SERVICE to istio-proxy, which then runs as root (uid 0, gid 1337); wins over values `global.proxy.capNetBindService`", "any; only `true` turns it on", nil},
	{annotationDatadogEnv, stepEnvironment, "with values `global.proxy.tracer: datadog`, each key becomes a proxy variable of that value", "JSON object of strings, numbers or booleans (checked only with the datadog tracer)", nil},
}

// parsed is a rule's Parse from a typed parser.
func parsed[T any](parse func(string) (T, error)) func(string) (any, error) {
	return func(v string) (any, error) { return parse(v) }
}

// checked is a rule's Parse from a check: the value is the string itself.
func checked(check func(string) error) func(string) (any, error) {
	return func(v string) (any, error) { return v, check(v) }
}

// parseAnnotations parses the value of every annotation of the table that
// a carries, in the table's order, into a.values.
func (a *annotations) parseAnnotations() error {
	for _, r := range annotationTable {
		if r.Parse == nil {
			continue
		}
		if v, ok := a.raw[r.Name]; ok {
			pv, err := r.Parse(v)
			if err != nil {
				return fieldError(r.Name, v, err)
			}
			if a.values == nil {
				a.values = make(map[string]any, 4)
			}
			a.values[r.Name] = pv
		}
	}
	return nil
}

func checkInterceptionMode(v string) error {
	if _, known := meshv1alpha1.ProxyConfig_InboundInterceptionMode_value[v]; !known {
		return fmt.Errorf("want REDIRECT, TPROXY or NONE")
	}
	return nil
}

func checkImage(v string) error {
	if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " \t\n") {
		return fmt.Errorf("not an image reference")
	}
	return nil
}

func checkImageType(v string) error {
	switch v {
	case "", "default", "distroless", "debug":
		return nil
	}
	return fmt.Errorf("want default, debug or distroless")
}

func checkConfigMapName(v string) error {
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Errorf("not a ConfigMap name: %s", strings.Join(errs, "; "))
	}
	return nil
}

// userVolumes reads sidecar.istio.io/userVolume: volumes by name.
func userVolumes(raw string) (map[string]corev1.Volume, error) {
	vols := map[string]corev1.Volume{}
	return vols, strictJSON(raw, &vols)
}

// userMounts reads sidecar.istio.io/userVolumeMount: mounts by name, each
// with a mountPath.
func userMounts(raw string) (map[string]corev1.VolumeMount, error) {
	mounts := map[string]corev1.VolumeMount{}
	if err := strictJSON(raw, &mounts); err != nil {
		return nil, err
	}
	for name, m := range mounts {
		if m.MountPath == "" {
			return nil, fmt.Errorf("mount %q has no mountPath", name)
		}
	}
	return mounts, nil
}

// AnnotationNames are the annotations that change injection, in the
// table's order.
func AnnotationNames() []string {
	names := make([]string, len(annotationTable))
	for i, r := range annotationTable {
		names[i] = r.Name
	}
	return names
}
