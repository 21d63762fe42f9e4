//go:build compat

package compat

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/internal/config"
)

// variant is one generated input: a pod of one of Istio's templates with
// values, mesh config, annotations or labels set away from the defaults.
type variant struct {
	name        string
	values      string            // YAML merged over the values of both sides
	mesh        string            // YAML merged over the mesh config of both sides
	annotations map[string]string // on the pod template
	labels      map[string]string // on the pod template
	account     string            // the pod's service account
}

// withValues is a variant that sets values alone.
func withValues(name, values string) variant { return variant{name: name, values: values} }

// valueVariants are the cases of each .Values path Istio's templates read:
// a non-default value of the right type, and one per branch the templates
// take on it.
var valueVariants = map[string][]variant{
	"global.caAddress":        {withValues("set", "global: {caAddress: ca.corp.example:15012}")},
	"global.caName":           {withValues("gke", "global: {caName: GkeWorkloadCertificate}"), withValues("other", "global: {caName: corp-ca}")},
	"global.imagePullPolicy":  {withValues("always", "global: {imagePullPolicy: Always}")},
	"global.imagePullSecrets": {withValues("two", "global: {imagePullSecrets: [reg-a, reg-b]}")},
	"global.istioNamespace":   {withValues("set", "global: {istioNamespace: mesh-system}")},
	"global.logAsJson":        {withValues("true", "global: {logAsJson: true}")},
	"global.logging.level":    {withValues("set", "global: {logging: {level: 'default:debug,ads:warn'}}")},
	"global.meshID":           {withValues("set", "global: {meshID: mesh-a}")},
	"global.mountMtlsCerts": {
		withValues("default-account", "global: {mountMtlsCerts: true}"),
		{name: "named-account", values: "global: {mountMtlsCerts: true}", account: "shop"},
	},
	"global.multiCluster.clusterName": {withValues("set", "global: {multiCluster: {clusterName: east}}")},
	"global.nativeNftables":           {withValues("true", "global: {nativeNftables: true}")},
	"global.network":                  {withValues("set", "global: {network: net-a}")},
	"global.pilotCertProvider": {
		withValues("kubernetes", "global: {pilotCertProvider: kubernetes}"),
		withValues("custom", "global: {pilotCertProvider: custom}"),
	},
	"global.proxy.capNetBindService": {
		withValues("true", "global: {proxy: {capNetBindService: true}}"),
		withValues("string-true", "global: {proxy: {capNetBindService: 'true'}}"),
		withValues("false", "global: {proxy: {capNetBindService: false}}"),
		{name: "tproxy", values: "global: {proxy: {capNetBindService: true}}", annotations: map[string]string{"sidecar.istio.io/interceptionMode": "TPROXY"}},
	},
	"global.proxy.clusterDomain":                   {withValues("set", "global: {proxy: {clusterDomain: corp.local}}")},
	"global.proxy.componentLogLevel":               {withValues("set", "global: {proxy: {componentLogLevel: 'misc:info,upstream:debug'}}")},
	"global.proxy.excludeIPRanges":                 {withValues("set", "global: {proxy: {excludeIPRanges: '10.0.0.0/8,192.168.0.0/16'}}"), withValues("cni", "global: {proxy: {excludeIPRanges: '10.0.0.0/8'}}\npilot: {cni: {enabled: true}}")},
	"global.proxy.excludeInboundPorts":             {withValues("set", "global: {proxy: {excludeInboundPorts: '8081,8082'}}"), withValues("cni", "global: {proxy: {excludeInboundPorts: '8081'}}\npilot: {cni: {enabled: true}}")},
	"global.proxy.excludeOutboundPorts":            {withValues("set", "global: {proxy: {excludeOutboundPorts: '5432'}}"), withValues("cni", "global: {proxy: {excludeOutboundPorts: '5432'}}\npilot: {cni: {enabled: true}}")},
	"global.proxy.holdApplicationUntilProxyStarts": {withValues("true", "global: {proxy: {holdApplicationUntilProxyStarts: true}}")},
	"global.proxy.image": {
		withValues("name", "global: {proxy: {image: proxyv2-corp}}"),
		withValues("reference", "global: {proxy: {image: registry.example/proxy:1}}"),
	},
	"global.proxy.includeIPRanges": {
		withValues("set", "global: {proxy: {includeIPRanges: '10.96.0.0/12'}}"),
		withValues("empty", "global: {proxy: {includeIPRanges: ''}}"),
		withValues("cni", "global: {proxy: {includeIPRanges: '10.96.0.0/12'}}\npilot: {cni: {enabled: true}}"),
	},
	"global.proxy.includeInboundPorts": {
		withValues("set", "global: {proxy: {includeInboundPorts: '8080'}}"),
		withValues("empty", "global: {proxy: {includeInboundPorts: ''}}"),
	},
	"global.proxy.includeOutboundPorts":         {withValues("set", "global: {proxy: {includeOutboundPorts: '443,8443'}}"), withValues("cni", "global: {proxy: {includeOutboundPorts: '443'}}\npilot: {cni: {enabled: true}}")},
	"global.proxy.lifecycle":                    {withValues("set", "global: {proxy: {lifecycle: {preStop: {exec: {command: [sleep, '5']}}}}}")},
	"global.proxy.logLevel":                     {withValues("set", "global: {proxy: {logLevel: debug}}")},
	"global.proxy.outlierLogPath":               {withValues("set", "global: {proxy: {outlierLogPath: /dev/stdout}}")},
	"global.proxy.privileged":                   {withValues("true", "global: {proxy: {privileged: true}}")},
	"global.proxy.readinessFailureThreshold":    {withValues("set", "global: {proxy: {readinessFailureThreshold: 9}}")},
	"global.proxy.readinessInitialDelaySeconds": {withValues("set", "global: {proxy: {readinessInitialDelaySeconds: 3}}")},
	"global.proxy.readinessPeriodSeconds":       {withValues("set", "global: {proxy: {readinessPeriodSeconds: 7}}")},
	"global.proxy.resources": {
		withValues("partial", "global: {proxy: {resources: {requests: {cpu: 50m}, limits: {memory: 256Mi}}}}"),
		withValues("none", "global: {proxy: {resources: null}}"),
	},
	"global.proxy.seccompProfile": {
		withValues("runtime-default", "global: {proxy: {seccompProfile: {type: RuntimeDefault}}}"),
		withValues("runtime-default-cni", "global: {proxy: {seccompProfile: {type: RuntimeDefault}}}\npilot: {cni: {enabled: true}}"),
		withValues("localhost", "global: {proxy: {seccompProfile: {type: Localhost, localhostProfile: profiles/proxy.json}}}"),
	},
	"global.proxy.startupProbe.enabled":          {withValues("false", "global: {proxy: {startupProbe: {enabled: false}}}")},
	"global.proxy.startupProbe.failureThreshold": {withValues("set", "global: {proxy: {startupProbe: {failureThreshold: 30}}}")},
	"global.proxy.statusPort": {
		withValues("set", "global: {proxy: {statusPort: 15030}}"),
		withValues("zero", "global: {proxy: {statusPort: 0}}"),
	},
	"global.proxy.tracer": {
		{name: "datadog", values: "global: {proxy: {tracer: datadog}}", annotations: map[string]string{"apm.datadoghq.com/env": `{"DD_ENV":"prod","DD_SERVICE":"shop","DD_VERSION":2}`}},
		withValues("datadog-no-env", "global: {proxy: {tracer: datadog}}"),
		{name: "lightstep", values: "global: {proxy: {tracer: lightstep}}", mesh: "defaultConfig: {tracing: {tlsSettings: {mode: SIMPLE, caCertificates: /etc/lightstep/ca.pem}}}"},
		withValues("lightstep-no-tls", "global: {proxy: {tracer: lightstep}}"),
		withValues("zipkin", "global: {proxy: {tracer: zipkin}}"),
		withValues("stackdriver", "global: {proxy: {tracer: stackdriver}}"),
		{name: "opencensus-with-datadog-env", values: "global: {proxy: {tracer: openCensusAgent}}", annotations: map[string]string{"apm.datadoghq.com/env": `{"DD_ENV":"prod"}`}},
		withValues("none", "global: {proxy: {tracer: none}}"),
	},
	"global.proxy_init.forceApplyIptables": {withValues("true", "global: {proxy_init: {forceApplyIptables: true}}")},
	"global.proxy_init.image": {
		withValues("name", "global: {proxy_init: {image: proxyv2-init}}"),
		withValues("reference", "global: {proxy_init: {image: registry.example/init:1}}"),
	},
	"global.sds.token.aud":   {withValues("set", "global: {sds: {token: {aud: corp-aud}}}")},
	"global.sts.servicePort": {withValues("set", "global: {sts: {servicePort: 15463}}")},
	"global.trustBundleName": {
		withValues("configmap", "global: {trustBundleName: corp-root}"),
		withValues("cluster-trust-bundle", "global: {trustBundleName: corp-root}\npilot: {env: {ENABLE_CLUSTER_TRUST_BUNDLE_API: true}}"),
	},
	"global.trustDomain":     {withValues("set", "global: {trustDomain: corp.example}")},
	"pilot.cni.enabled":      {withValues("true", "pilot: {cni: {enabled: true}}")},
	"pilot.cni.provider":     {withValues("multus", "pilot: {cni: {enabled: true, provider: multus}}")},
	"pilot.crlConfigMapName": {withValues("set", "pilot: {crlConfigMapName: corp-crl}")},
	"pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API": {
		withValues("true", "pilot: {env: {ENABLE_CLUSTER_TRUST_BUNDLE_API: true}}"),
		withValues("false", "pilot: {env: {ENABLE_CLUSTER_TRUST_BUNDLE_API: false}}"),
		withValues("with-other-provider", "global: {pilotCertProvider: kubernetes}\npilot: {env: {ENABLE_CLUSTER_TRUST_BUNDLE_API: true}}"),
	},
	"revision":                 {withValues("set", "revision: canary")},
	"gateways.securityContext": {withValues("set", "gateways: {securityContext: {runAsNonRoot: true, fsGroup: 1337}}")},
}

// annotationValues are non-default values of each annotation Istio's
// templates read; every annotation also gets an empty value. An entry may
// need values or mesh config to take effect (vars).
var annotationValues = map[string][]variant{
	"apm.datadoghq.com/env":                                 {{name: "datadog", values: "global: {proxy: {tracer: datadog}}"}},
	"istio.io/reroute-virtual-interfaces":                   {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"k8s.v1.cni.cncf.io/networks":                           {{name: "multus", values: "pilot: {cni: {enabled: true, provider: multus}}"}},
	"kubectl.kubernetes.io/default-container":               {{name: "set"}},
	"kubectl.kubernetes.io/default-logs-container":          {{name: "set"}},
	"readiness.status.sidecar.istio.io/failureThreshold":    {{name: "set"}},
	"readiness.status.sidecar.istio.io/initialDelaySeconds": {{name: "set"}},
	"readiness.status.sidecar.istio.io/periodSeconds":       {{name: "set"}},
	"sidecar.istio.io/agentLogLevel":                        {{name: "set"}},
	"sidecar.istio.io/bootstrapOverride":                    {{name: "set"}},
	"sidecar.istio.io/capNetBindService":                    {{name: "set"}, {name: "over-values-true", values: "global: {proxy: {capNetBindService: true}}"}},
	"sidecar.istio.io/componentLogLevel":                    {{name: "set"}},
	"sidecar.istio.io/interceptionMode":                     {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"sidecar.istio.io/logLevel":                             {{name: "set"}},
	"sidecar.istio.io/nativeSidecar":                        {{name: "set"}},
	"sidecar.istio.io/proxyCPU":                             {{name: "set"}},
	"sidecar.istio.io/proxyCPULimit":                        {{name: "set"}},
	"sidecar.istio.io/proxyImage":                           {{name: "set"}},
	"sidecar.istio.io/proxyMemory":                          {{name: "set"}},
	"sidecar.istio.io/proxyMemoryLimit":                     {{name: "set"}},
	"sidecar.istio.io/userVolume":                           {{name: "set"}},
	"sidecar.istio.io/userVolumeMount":                      {{name: "set"}},
	"status.sidecar.istio.io/port":                          {{name: "set"}},
	"traffic.sidecar.istio.io/excludeInboundPorts":          {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/excludeInterfaces":            {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/excludeOutboundIPRanges":      {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/excludeOutboundPorts":         {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/includeInboundPorts":          {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/includeOutboundIPRanges":      {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/includeOutboundPorts":         {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
	"traffic.sidecar.istio.io/kubevirtInterfaces":           {{name: "set"}, {name: "cni", values: "pilot: {cni: {enabled: true}}"}},
}

// annotationSample is the value a "set" variant writes for an annotation.
var annotationSample = map[string]string{
	"apm.datadoghq.com/env":                                 `{"DD_ENV":"prod","DD_TRACE_ENABLED":true}`,
	"istio.io/reroute-virtual-interfaces":                   "eth1,eth2",
	"k8s.v1.cni.cncf.io/networks":                           "macvlan-conf",
	"kubectl.kubernetes.io/default-container":               "sidecar-helper",
	"kubectl.kubernetes.io/default-logs-container":          "sidecar-helper",
	"readiness.status.sidecar.istio.io/failureThreshold":    "11",
	"readiness.status.sidecar.istio.io/initialDelaySeconds": "5",
	"readiness.status.sidecar.istio.io/periodSeconds":       "3",
	"sidecar.istio.io/agentLogLevel":                        "default:debug",
	"sidecar.istio.io/bootstrapOverride":                    "custom-bootstrap",
	"sidecar.istio.io/capNetBindService":                    "true",
	"sidecar.istio.io/componentLogLevel":                    "upstream:debug",
	"sidecar.istio.io/interceptionMode":                     "TPROXY",
	"sidecar.istio.io/logLevel":                             "trace",
	"sidecar.istio.io/nativeSidecar":                        "true",
	"sidecar.istio.io/proxyCPU":                             "250m",
	"sidecar.istio.io/proxyCPULimit":                        "1",
	"sidecar.istio.io/proxyImage":                           "registry.example/proxy:2",
	"sidecar.istio.io/proxyMemory":                          "200Mi",
	"sidecar.istio.io/proxyMemoryLimit":                     "512Mi",
	"sidecar.istio.io/userVolume":                           `{"extra":{"configMap":{"name":"extra"}}}`,
	"sidecar.istio.io/userVolumeMount":                      `{"extra":{"mountPath":"/etc/extra","readOnly":true}}`,
	"status.sidecar.istio.io/port":                          "0",
	"traffic.sidecar.istio.io/excludeInboundPorts":          "9000",
	"traffic.sidecar.istio.io/excludeInterfaces":            "eth9",
	"traffic.sidecar.istio.io/excludeOutboundIPRanges":      "169.254.169.254/32",
	"traffic.sidecar.istio.io/excludeOutboundPorts":         "3306",
	"traffic.sidecar.istio.io/includeInboundPorts":          "8080,9090",
	"traffic.sidecar.istio.io/includeOutboundIPRanges":      "10.0.0.0/8",
	"traffic.sidecar.istio.io/includeOutboundPorts":         "80",
	"traffic.sidecar.istio.io/kubevirtInterfaces":           "net1",
}

// labelSample is the value a "set" variant writes for a label; every label
// also gets an empty value. networking.istio.io/tunnel takes effect with
// HBONE on.
var labelSample = map[string]string{
	"app":                                 "storefront",
	"app.kubernetes.io/name":              "storefront-k8s",
	"app.kubernetes.io/version":           "v7",
	"version":                             "v3",
	"service.istio.io/canonical-name":     "canonical-shop",
	"service.istio.io/canonical-revision": "r42",
	"service.istio.io/workload-name":      "shop-workload",
	"security.istio.io/tlsMode":           "disabled",
	"networking.istio.io/tunnel":          "none",
}

// hbone turns on HBONE in the mesh's proxy metadata.
const hbone = "defaultConfig: {proxyMetadata: {ISTIO_META_ENABLE_HBONE: 'true'}}"

// metadataVariants are the cases of each proxyMetadata key the templates
// read.
var metadataVariants = map[string][]variant{
	"IPTABLES_TRACE_LOGGING": {
		{name: "true", mesh: "defaultConfig: {proxyMetadata: {IPTABLES_TRACE_LOGGING: 'true'}}"},
		{name: "true-seccomp", mesh: "defaultConfig: {proxyMetadata: {IPTABLES_TRACE_LOGGING: 'true'}}", values: "global: {proxy: {seccompProfile: {type: RuntimeDefault}}}"},
	},
	"ISTIO_META_ENABLE_HBONE": {
		{name: "true", mesh: hbone},
		{name: "true-label-set", mesh: hbone, labels: map[string]string{"networking.istio.io/tunnel": "none"}},
		{name: "false", mesh: "defaultConfig: {proxyMetadata: {ISTIO_META_ENABLE_HBONE: 'false'}}"},
	},
}

// variantsOf returns the generated cases of one read of a template.
func variantsOf(read string) []variant {
	kind, key, _ := strings.Cut(read, ":")
	switch kind {
	case "values":
		return valueVariants[key]
	case "proxyMetadata":
		return metadataVariants[key]
	case "annotation":
		sample, ok := annotationSample[key]
		if !ok {
			return nil
		}
		out := []variant{{name: "empty", annotations: map[string]string{key: ""}}}
		for _, v := range annotationValues[key] {
			if v.name != "set" {
				// The value that only takes effect with these values
				// is also tried empty with them.
				out = append(out, variant{name: v.name + "-empty", values: v.values, annotations: map[string]string{key: ""}})
			}
			v.annotations = map[string]string{key: sample}
			out = append(out, v)
		}
		return out
	case "label":
		sample, ok := labelSample[key]
		if !ok {
			return nil
		}
		out := []variant{{name: "set", labels: map[string]string{key: sample}}, {name: "empty", labels: map[string]string{key: ""}}}
		if key == "app" {
			// Istio trims the canonical name it derives: how, depends
			// on the template and version.
			out = append(out, variant{name: "untrimmed", labels: map[string]string{key: "_storefront-" + strings.Repeat("x", 60) + "._-"}},
				variant{name: "trailing", labels: map[string]string{key: "storefront_-"}})
		}
		if key == "networking.istio.io/tunnel" {
			out = append(out, variant{name: "hbone", mesh: hbone, labels: map[string]string{key: sample}})
		}
		return out
	}
	return nil
}

// coverageAllow are the generated cases (template/read/variant) or whole
// reads (template/read) where the built-ins deliberately differ from
// Istio's templates, each with its reason; their cases are skipped and
// counted. It holds no sidecar or gateway entry.
var coverageAllow = map[string]string{
	"grpc-agent/values:global.proxy.statusPort/zero":         grpcAgentStatusZero,
	"grpc-agent/annotation:status.sidecar.istio.io/port/set": grpcAgentStatusZero,
}

// grpcAgentStatusZero is why the grpc-agent built-in keeps its resources and
// mounts with status port 0.
const grpcAgentStatusZero = "Istio's grpc-agent template closes its status-port condition after the agent's resources and volume mounts, " +
	"so with status port 0 the agent has no resources and no mounts and cannot write the gRPC bootstrap or read its certificates; the built-in drops only the readiness probe"

// TestValueCoverage lists every value, annotation, label and proxyMetadata
// key Istio's injection templates read (for each served version, from
// their parse trees) and injects a pod of each template with every
// generated variant of every read of any of the four (a read of another
// template shows that the template leaves it alone), with Istio's
// templates and the built-ins, and wants the same output. A template's own
// read with no case fails, unless coverageAllow lists it.
func TestValueCoverage(t *testing.T) {
	for _, is := range istios(t) {
		t.Run(is.version, func(t *testing.T) {
			own, all := coverageReads(t, filepath.Join(moduleDir(t, is.version), chartFiles))
			total, skipped, reads := 0, 0, 0
			for _, tmpl := range istioTemplates {
				reads += len(own[tmpl.name])
				for _, read := range own[tmpl.name] {
					if len(variantsOf(read)) > 0 {
						continue
					}
					if reason, ok := coverageAllow[tmpl.name+"/"+read]; ok {
						skipped++
						t.Logf("%s/%s: not covered: %s", tmpl.name, read, reason)
					} else {
						t.Errorf("%s reads %s and no case covers it (add one, or an allow-list entry with its reason)", tmpl.name, read)
					}
				}
				for _, read := range all {
					for _, v := range variantsOf(read) {
						total++
						if runVariant(t, is, tmpl.name, read, v) {
							skipped++
						}
					}
				}
			}
			t.Logf("%d reads in Istio's %d templates (%d distinct), %d generated cases, %d of them allow-listed", reads, len(istioTemplates), len(all), total, skipped)
		})
	}
}

// coverageReads are the reads of each of Istio's templates in dir, and all
// of them, sorted.
func coverageReads(t *testing.T, dir string) (map[string][]string, []string) {
	t.Helper()
	own := map[string][]string{}
	seen := map[string]bool{}
	for _, tmpl := range istioTemplates {
		own[tmpl.name] = templateReads(t, filepath.Join(dir, tmpl.file))
		for _, r := range own[tmpl.name] {
			seen[r] = true
		}
	}
	return own, slices.Sorted(maps.Keys(seen))
}

// runVariant compares one generated case in a parallel subtest; it reports
// whether the case is allow-listed (and so skipped).
func runVariant(t *testing.T, is istio, tmpl, read string, v variant) bool {
	t.Helper()
	c := coverageCase(t, tmpl, v)
	c.name = tmpl + "/" + read + "/" + v.name
	reason, allowed := coverageAllow[c.name]
	if r, ok := versionDrift[is.version][c.name]; ok {
		reason, allowed = r, true
	}
	t.Run(c.name, func(t *testing.T) {
		t.Parallel()
		if allowed {
			t.Skip(reason)
		}
		compareTemplates(t, c, is)
	})
	return allowed
}

// coverageCase writes v's input (a Deployment whose pod uses template
// tmpl) and its values and mesh files, and returns the case.
func coverageCase(t *testing.T, tmpl string, v variant) inputCase {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	c := inputCase{path: write("in.yaml", coverageInput(t, tmpl, v))}
	if v.values != "" {
		c.flags = append(c.flags, "--valuesFile", write("values.yaml", v.values))
	}
	if v.mesh != "" {
		c.flags = append(c.flags, "--meshConfigFile", write("mesh.yaml", v.mesh))
	}
	return c
}

// coverageInput is the Deployment of a variant: an app with a port (or, for
// the gateway, istio-proxy with image auto) and a helper container.
func coverageInput(t *testing.T, tmpl string, v variant) string {
	t.Helper()
	labels := map[string]string{"app": "shop", "version": "v1"}
	maps.Copy(labels, v.labels)
	annotations := map[string]string{}
	if tmpl != "sidecar" {
		annotations["inject.istio.io/templates"] = tmpl
	}
	maps.Copy(annotations, v.annotations)
	containers := []any{
		map[string]any{"name": "shop", "image": "registry.example/shop:1", "ports": []any{map[string]any{"name": "http", "containerPort": 8080}}},
		map[string]any{"name": "sidecar-helper", "image": "registry.example/helper:1"},
	}
	if tmpl == "gateway" {
		containers = []any{map[string]any{"name": "istio-proxy", "image": "auto"}}
	}
	spec := map[string]any{"containers": containers}
	if v.account != "" {
		spec["serviceAccountName"] = v.account
	}
	d := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "shop", "namespace": "shop"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "shop"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels, "annotations": annotations},
				"spec":     spec,
			},
		},
	}
	b, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIstioConfigMapLoadsCleanly loads each version's istio-sidecar-injector
// values under the built-in templates, strictly: every key Istio's
// ConfigMap carries is read by injection or listed as inert. And no inert
// key is read by Istio's injection templates, so listing one as inert
// cannot hide a gap.
func TestIstioConfigMapLoadsCleanly(t *testing.T) {
	for _, is := range istios(t) {
		t.Run(is.version, func(t *testing.T) {
			values, err := os.ReadFile(filepath.Join(is.dir, "values"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(config.Sources{Values: values})
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("Istio's values load with %d warnings:\n%s", len(cfg.Warnings), strings.Join(cfg.Warnings, "\n"))
			}
			if _, err := config.Load(config.Sources{Values: values, StrictValues: true}); err != nil {
				t.Errorf("strict: %v", err)
			}
			dir := filepath.Join(moduleDir(t, is.version), chartFiles)
			inert := config.InertValues()
			for _, tmpl := range istioTemplates {
				for _, read := range templateReads(t, filepath.Join(dir, tmpl.file)) {
					path, ok := strings.CutPrefix(read, "values:")
					if !ok {
						continue
					}
					for key := range inert {
						if path == key || strings.HasPrefix(path, key+".") {
							t.Errorf("%s is listed as inert, but Istio's %s template reads %s", key, tmpl.name, path)
						}
					}
				}
			}
		})
	}
}
