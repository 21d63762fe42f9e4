package config

import (
	"text/template"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// injectionConfig is the injection config: the "config" key of Istio's
// istio-sidecar-injector ConfigMap.
type injectionConfig struct {
	// Policy is "enabled" (inject unless opted out) or "disabled" (inject only
	// when opted in). Default "enabled".
	Policy string `json:"policy,omitempty"`
	// DefaultTemplates are used when a pod names none. Default [sidecar].
	DefaultTemplates []string `json:"defaultTemplates,omitempty"`
	// Templates maps a name to Go template text. Entries replace built-ins of
	// the same name; new names are added.
	Templates map[string]string `json:"templates,omitempty"`
	// Aliases maps a name to the templates it stands for (one level).
	Aliases map[string][]string `json:"aliases,omitempty"`
	// NeverInjectSelector: pods matching any of these are not injected by
	// default.
	NeverInjectSelector []metav1.LabelSelector `json:"neverInjectSelector,omitempty"`
	// AlwaysInjectSelector: pods matching any of these are injected by default.
	AlwaysInjectSelector []metav1.LabelSelector `json:"alwaysInjectSelector,omitempty"`
	// InjectedAnnotations are added to every injected pod, last.
	InjectedAnnotations map[string]string `json:"injectedAnnotations,omitempty"`
}

// Config is a loaded, validated configuration. It is read-only once Load
// returns it.
type Config struct {
	// Injection is the injection config with the built-in templates added.
	Injection injectionConfig
	// Values is the merged values tree, exposed to templates as .Values.
	Values map[string]any
	// Typed is the part of Values the engine reads, decoded and validated.
	Typed values
	// Mesh is the merged mesh config, exposed to templates as .MeshConfig.
	Mesh *meshv1alpha1.MeshConfig
	// DefaultProxyConfig is Istio's built-in default ProxyConfig; fields
	// equal to it are left out of PROXY_CONFIG.
	DefaultProxyConfig *meshv1alpha1.ProxyConfig
	// Revision is the control-plane revision, "" for the default one.
	Revision string
	// Templates are the compiled templates by name.
	Templates map[string]*template.Template
	// CompliancePolicy is the TLS compliance policy templates see as
	// .CompliancePolicy (e.g. "fips-140-3"): values pilot.env.COMPLIANCE_POLICY,
	// else the process's COMPLIANCE_POLICY environment variable, as istiod
	// reads its own.
	CompliancePolicy string
	// IstioMinor is the Istio minor version the built-in templates follow:
	// values compatibilityVersion where set, else the minor of global.tag
	// (1.30 from "1.30.4-distroless"); 0 when neither names one (see
	// Follows).
	IstioMinor int
	// ClusterTrustBundle is values pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API:
	// istiod's root certificate comes from a ClusterTrustBundle projected
	// volume rather than a ConfigMap.
	ClusterTrustBundle bool
	// NeverInject and AlwaysInject are the compiled selectors.
	NeverInject, AlwaysInject []labels.Selector
	// Warnings name the values keys injection does not read, one line
	// each (see Sources.StrictValues).
	Warnings []string
	// Hash names the configuration's inputs: the first 12 hex digits of a
	// SHA-256 over the sources Load was given. Equal sources give equal
	// hashes, so it says which configuration injected a pod.
	Hash string
}

// defaultIstioMinor is the minor of the embedded default tag (1.31.4): the
// version the built-ins follow when values name none.
const defaultIstioMinor = 31

// Follows reports whether the built-ins follow Istio 1.minor or later: the
// values' minor, else DefaultIstioMinor.
func (c *Config) Follows(minor int) bool {
	m := c.IstioMinor
	if m == 0 {
		m = defaultIstioMinor
	}
	return m >= minor
}

// RevisionName returns the revision as it appears on pods: "default" for
// the default revision.
func (c *Config) RevisionName() string {
	if c.Revision == "" {
		return "default"
	}
	return c.Revision
}

// values is the part of the values tree the engine reads.
type values struct {
	Global                 GlobalValues                 `json:"global"`
	SidecarInjectorWebhook sidecarInjectorWebhookValues `json:"sidecarInjectorWebhook"`
	Pilot                  pilotValues                  `json:"pilot"`
	Revision               string                       `json:"revision"`
}

// GlobalValues is values.global.
type GlobalValues struct {
	Hub              string   `json:"hub"`
	Tag              any      `json:"tag"`
	Variant          string   `json:"variant"`
	ImagePullPolicy  string   `json:"imagePullPolicy"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	IstioNamespace   string   `json:"istioNamespace"`
	CAAddress        string   `json:"caAddress"`
	// CAName "GkeWorkloadCertificate" mounts GKE's workload certificates
	// (a CSI volume) in place of the workload-certs emptyDir.
	CAName string `json:"caName"`
	// PilotCertProvider "istiod" (the default) mounts istiod's root
	// certificate and CRL; any other provider mounts neither.
	PilotCertProvider string `json:"pilotCertProvider"`
	// TrustBundleName names the root-certificate ConfigMap (default
	// istio-ca-root-cert) or, with the ClusterTrustBundle API, the bundle
	// istio.io:istiod-ca:NAME (default root-cert).
	TrustBundleName string `json:"trustBundleName"`
	Logging         struct {
		Level string `json:"level"`
	} `json:"logging"`
	LogAsJSON bool `json:"logAsJson"`
	SDS       struct {
		Token struct {
			Aud string `json:"aud"`
		} `json:"token"`
	} `json:"sds"`
	MultiCluster struct {
		ClusterName string `json:"clusterName"`
	} `json:"multiCluster"`
	// STS.ServicePort, when not 0, is the agent's --stsPort.
	STS struct {
		ServicePort int32 `json:"servicePort"`
	} `json:"sts"`
	Network        string      `json:"network"`
	MeshID         string      `json:"meshID"`
	TrustDomain    string      `json:"trustDomain"`
	MountMtlsCerts bool        `json:"mountMtlsCerts"`
	Proxy          ProxyValues `json:"proxy"`
	ProxyInit      struct {
		Image              string `json:"image"`
		ForceApplyIptables bool   `json:"forceApplyIptables"`
	} `json:"proxy_init"`
	NativeNftables bool `json:"nativeNftables"`
}

// ProxyValues is values.global.proxy.
type ProxyValues struct {
	Image                        string         `json:"image"`
	StatusPort                   int32          `json:"statusPort"`
	LogLevel                     string         `json:"logLevel"`
	ComponentLogLevel            string         `json:"componentLogLevel"`
	ClusterDomain                string         `json:"clusterDomain"`
	IncludeIPRanges              string         `json:"includeIPRanges"`
	ExcludeIPRanges              string         `json:"excludeIPRanges"`
	IncludeInboundPorts          string         `json:"includeInboundPorts"`
	ExcludeInboundPorts          string         `json:"excludeInboundPorts"`
	IncludeOutboundPorts         string         `json:"includeOutboundPorts"`
	ExcludeOutboundPorts         string         `json:"excludeOutboundPorts"`
	Privileged                   bool           `json:"privileged"`
	ReadinessInitialDelaySeconds int32          `json:"readinessInitialDelaySeconds"`
	ReadinessPeriodSeconds       int32          `json:"readinessPeriodSeconds"`
	ReadinessFailureThreshold    int32          `json:"readinessFailureThreshold"`
	StartupProbe                 startupProbe   `json:"startupProbe"`
	HoldApplication              bool           `json:"holdApplicationUntilProxyStarts"`
	Lifecycle                    map[string]any `json:"lifecycle"`
	Resources                    Resources      `json:"resources"`
	// SeccompProfile is the seccomp profile of istio-proxy and the init
	// container; empty for none.
	SeccompProfile map[string]any `json:"seccompProfile"`
	// CapNetBindService, when true (or "true"), gives istio-proxy
	// NET_BIND_SERVICE and runs it as root, as Istio does; the annotation
	// sidecar.istio.io/capNetBindService wins.
	CapNetBindService any `json:"capNetBindService"`
	// OutlierLogPath, when set, is the sidecar's --outlierLogPath.
	OutlierLogPath string `json:"outlierLogPath"`
	// Tracer is the tracing provider: "datadog" passes the pod's
	// apm.datadoghq.com/env to the proxy, "lightstep" mounts the
	// lightstep.cacert Secret where the ProxyConfig's tracing TLS settings
	// read their CA.
	Tracer string `json:"tracer"`
}

// startupProbe is values.global.proxy.startupProbe.
type startupProbe struct {
	Enabled          bool  `json:"enabled"`
	FailureThreshold int32 `json:"failureThreshold"`
}

// Resources is values.global.proxy.resources: resource name to quantity.
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// sidecarInjectorWebhookValues is values.sidecarInjectorWebhook.
type sidecarInjectorWebhookValues struct {
	RewriteAppHTTPProbe bool `json:"rewriteAppHTTPProbe"`
}

// pilotValues is values.pilot.
type pilotValues struct {
	CNI struct {
		Enabled  bool   `json:"enabled"`
		Provider string `json:"provider"`
	} `json:"cni"`
	// Env is istiod's environment in Istio's chart; COMPLIANCE_POLICY and
	// ENABLE_CLUSTER_TRUST_BUNDLE_API are read from it.
	Env map[string]any `json:"env"`
	// CRLConfigMapName names the CRL ConfigMap (default istio-ca-crl).
	CRLConfigMapName string `json:"crlConfigMapName"`
}
