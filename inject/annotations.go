package inject

import "istio.io/api/annotation"

// readAnnotations are the annotations a pod can carry to change its
// injection, by the part of the settings they change, with Istio's own
// definitions (istio.io/api/annotation). Decide and templates read
// AnnotationInject and AnnotationTemplates; resolve reads the rest, each in
// its step. TestAnnotationTable checks that the engine reads no other, and
// that the README's table and the fuzz list name every one.
var readAnnotations = map[string][]*annotation.Instance{
	"decision":        {&annotation.SidecarInject, &annotation.InjectTemplates},
	"proxy config":    {&annotation.ProxyConfig},
	"interception":    {&annotation.SidecarInterceptionMode, &annotation.SidecarNativeSidecar},
	"probes":          {&annotation.SidecarStatusPort, &annotation.SidecarStatusReadinessInitialDelaySeconds, &annotation.SidecarStatusReadinessPeriodSeconds, &annotation.SidecarStatusReadinessFailureThreshold, &annotation.SidecarRewriteAppHTTPProbers, &annotation.PrometheusMergeMetrics},
	"images":          {&annotation.SidecarProxyImage, &annotation.SidecarProxyImageType},
	"agent arguments": {&annotation.SidecarLogLevel, &annotation.SidecarComponentLogLevel, &annotation.SidecarAgentLogLevel},
	"resources":       {&annotation.SidecarProxyCPU, &annotation.SidecarProxyMemory, &annotation.SidecarProxyCPULimit, &annotation.SidecarProxyMemoryLimit},
	"traffic": {&annotation.SidecarTrafficIncludeOutboundIPRanges, &annotation.SidecarTrafficExcludeOutboundIPRanges,
		&annotation.SidecarTrafficIncludeInboundPorts, &annotation.SidecarTrafficExcludeInboundPorts,
		&annotation.SidecarTrafficIncludeOutboundPorts, &annotation.SidecarTrafficExcludeOutboundPorts,
		&annotation.SidecarTrafficExcludeInterfaces, &annotation.SidecarTrafficKubevirtInterfaces, &annotation.IoIstioRerouteVirtualInterfaces},
	"volumes": {&annotation.SidecarBootstrapOverride, &annotation.SidecarUserVolume, &annotation.SidecarUserVolumeMount},
}
