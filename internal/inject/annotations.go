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
	// Step is what reads it: "decision", "templates", "prometheus" or the
	// resolve step of that name.
	Step string
	// Effect says where the value lands.
	Effect string
	// Valid says what a value must be.
	Valid string
	// Check validates a value before any step reads it; its error is the
	// refusal's reason. nil when the check needs more than the value (the
	// configuration, or other annotations): the step that reads it checks.
	Check func(string) error
}

// annotationTable lists every annotation that changes injection. To add
// one: add its row here, read it in its step with the annotations reader
// (the value has passed Check by then), and run
// go test ./internal/inject -run TestAnnotationTable -update to regenerate the
// README's table. TestAnnotationTable checks that the engine reads no
// annotation the table does not list, and FuzzAnnotations fuzzes every
// row.
var annotationTable = []annotationRule{
	{annotation.SidecarInject.Name, "decision", "`true` injects, `false` skips; a label of the same name wins", "other values warn and use the default", nil},
	{annotation.InjectTemplates.Name, "templates", "comma-separated templates (aliases expanded), each applied once", "every name is a template of the configuration", nil},
	{annotation.ProxyConfig.Name, "proxy config", "ProxyConfig overlay (`PROXY_CONFIG`, interception, hold, proxyMetadata)", "ProxyConfig YAML/JSON, no negative duration", checkProxyConfig},
	{annotation.SidecarInterceptionMode.Name, "interception", "`REDIRECT`, `TPROXY` (proxy as uid 0 with NET_ADMIN), `NONE` (no init container)", "one of those", checkInterceptionMode},
	{annotation.SidecarNativeSidecar.Name, "interception", "a native (`true`) or classic (`false`) sidecar", "boolean", checkBool},
	{annotation.SidecarStatusPort.Name, "probes", "agent status port; `0` turns off probes and rewrites", "0-65535", checkStatusPort},
	{annotation.SidecarStatusReadinessInitialDelaySeconds.Name, "probes", "the proxy readiness probe's `initialDelaySeconds`", "unsigned integer", checkUint32},
	{annotation.SidecarStatusReadinessPeriodSeconds.Name, "probes", "the proxy readiness probe's `periodSeconds`", "unsigned integer", checkUint32},
	{annotation.SidecarStatusReadinessFailureThreshold.Name, "probes", "the proxy readiness probe's `failureThreshold`", "unsigned integer", checkUint32},
	{annotation.SidecarRewriteAppHTTPProbers.Name, "probes", "rewrite the app's HTTP and gRPC probes through the agent", "boolean", checkBool},
	{annotation.PrometheusMergeMetrics.Name, "probes", "the agent serves the app's metrics merged with Envoy's", "boolean", checkBool},
	{"prometheus.istio.io/scrape-targets", "prometheus", "`port[:path],...` the agent scrapes and merges (path default `/metrics`)", "ports in 1-65535, not the agent's or the data plane's", nil},
	{annotation.SidecarProxyImage.Name, "images", "image of the proxy and init containers, verbatim", "non-empty, no spaces", checkImage},
	{annotation.SidecarProxyImageType.Name, "images", "`distroless`/`debug` tag suffix, `default` none", "one of those", checkImageType},
	{annotation.SidecarLogLevel.Name, "agent arguments", "the proxy's log level (`--proxyLogLevel`)", "log level", validate.LogLevel},
	{annotation.SidecarComponentLogLevel.Name, "agent arguments", "the proxy's component log levels (`--proxyComponentLogLevel`)", "`scope:level` list", validate.ScopedLogLevels},
	{annotation.SidecarAgentLogLevel.Name, "agent arguments", "pilot-agent's and istio-iptables' log levels (`--log_output_level`)", "`scope:level` list", validate.ScopedLogLevels},
	{annotation.SidecarProxyCPU.Name, "resources", "the proxy's `requests.cpu`; when any of the four resource annotations is set, only the annotated values are used", "non-negative quantity Kubernetes can store", checkQuantity},
	{annotation.SidecarProxyMemory.Name, "resources", "the proxy's `requests.memory`", "non-negative quantity Kubernetes can store", checkQuantity},
	{annotation.SidecarProxyCPULimit.Name, "resources", "the proxy's `limits.cpu`", "non-negative quantity Kubernetes can store", checkQuantity},
	{annotation.SidecarProxyMemoryLimit.Name, "resources", "the proxy's `limits.memory`", "non-negative quantity Kubernetes can store", checkQuantity},
	{annotation.SidecarTrafficIncludeOutboundIPRanges.Name, "traffic", "istio-iptables `-i`", "CIDR list or `*`", func(v string) error { return validate.CIDRs(v, true) }},
	{annotation.SidecarTrafficExcludeOutboundIPRanges.Name, "traffic", "istio-iptables `-x`", "CIDR list", func(v string) error { return validate.CIDRs(v, false) }},
	{annotation.SidecarTrafficIncludeInboundPorts.Name, "traffic", "istio-iptables `-b`", "port list or `*`", func(v string) error { return validate.Ports(v, true) }},
	{annotation.SidecarTrafficExcludeInboundPorts.Name, "traffic", "istio-iptables `-d`, after the agent's and Envoy's ports", "port list", func(v string) error { return validate.Ports(v, false) }},
	{annotation.SidecarTrafficIncludeOutboundPorts.Name, "traffic", "istio-iptables `-q`", "port list or `*`", func(v string) error { return validate.Ports(v, true) }},
	{annotation.SidecarTrafficExcludeOutboundPorts.Name, "traffic", "istio-iptables `-o`", "port list", func(v string) error { return validate.Ports(v, false) }},
	{annotation.SidecarTrafficExcludeInterfaces.Name, "traffic", "istio-iptables `-c`", "interface names", validate.Interfaces},
	{annotation.SidecarTrafficKubevirtInterfaces.Name, "traffic", "istio-iptables `-k`", "interface names", validate.Interfaces},
	{annotation.IoIstioRerouteVirtualInterfaces.Name, "traffic", "istio-iptables `-k`, in place of kubevirtInterfaces", "interface names", validate.Interfaces},
	{annotation.SidecarBootstrapOverride.Name, "volumes", "mounts the bootstrap ConfigMap of that name and sets `ISTIO_BOOTSTRAP_OVERRIDE`", "ConfigMap name", checkConfigMapName},
	{annotation.SidecarUserVolume.Name, "volumes", "extra volumes of the pod, mounted by userVolumeMount", "JSON map of name to Volume", checkUserVolumes},
	{annotation.SidecarUserVolumeMount.Name, "volumes", "extra mounts of the proxy", "JSON map of name to VolumeMount, each with a mountPath", checkUserMounts},
	{annotationCapNetBindService, "security", "`true` adds NET_BIND_SERVICE to istio-proxy, which then runs as root (uid 0, gid 1337); wins over values `global.proxy.capNetBindService`", "any; only `true` turns it on", nil},
	{annotationDatadogEnv, "environment", "with values `global.proxy.tracer: datadog`, each key becomes a proxy variable of that value", "JSON object of strings, numbers or booleans (checked only with the datadog tracer)", nil},
}

// checkAnnotations checks the value of every annotation of the table that
// a has, in the table's order.
func (a annotations) checkAnnotations() error {
	for _, r := range annotationTable {
		if r.Check == nil {
			continue
		}
		if v, ok := a[r.Name]; ok {
			if err := r.Check(v); err != nil {
				return fieldError(r.Name, v, err)
			}
		}
	}
	return nil
}

func checkProxyConfig(v string) error {
	_, err := config.ParseProxyConfig(v)
	return err
}

func checkInterceptionMode(v string) error {
	if _, known := meshv1alpha1.ProxyConfig_InboundInterceptionMode_value[v]; !known {
		return fmt.Errorf("want REDIRECT, TPROXY or NONE")
	}
	return nil
}

func checkBool(v string) error {
	_, err := validate.Bool(v)
	return err
}

func checkUint32(v string) error {
	_, err := validate.Uint32(v)
	return err
}

func checkStatusPort(v string) error {
	_, err := validate.StatusPort(v)
	return err
}

func checkQuantity(v string) error {
	_, err := validate.Quantity(v)
	return err
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

func checkUserVolumes(v string) error {
	_, err := userVolumes(v)
	return err
}

func checkUserMounts(v string) error {
	_, err := userMounts(v)
	return err
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
