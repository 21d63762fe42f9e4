package inject

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"istio.io/api/annotation"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/json"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/templates"
)

// Well-known ports and ids of the Istio data plane.
const (
	// proxyUID and proxyGID are the uid and gid istio-proxy runs as; the
	// iptables rules exempt this uid's traffic from redirection (1337).
	proxyUID = 1337
	proxyGID = 1337
	// envoyPromPort is Envoy's Prometheus stats port (15090) and
	// agentHealthPort pilot-agent's health/readiness port (15021); both are
	// always excluded from inbound capture.
	envoyPromPort   = "15090"
	agentHealthPort = "15021"
	// bootstrapOverridePath is where a custom bootstrap ConfigMap is mounted.
	bootstrapOverrideDir = "/etc/istio/custom-bootstrap"
)

// settings are the per-pod values the engine resolves from annotations,
// values and mesh config before rendering. Templates see them as .Settings
// (a meshinject extension beside Istio's template data).
type settings struct {
	Revision string
	// CanonicalName is the sidecar's canonical name (at most 63
	// characters, trimmed); CanonicalNameUntrimmed the same name as the
	// gateway and grpc-agent templates write it, verbatim.
	CanonicalName          string
	CanonicalNameUntrimmed string
	CanonicalRevision      string
	DefaultContainer       string
	DefaultLogsContainer   string
	InterceptionMode       string
	InitContainer          bool
	CNI                    bool
	CNIAnnotations         map[string]string
	ImagePullPolicy        string
	ImagePullSecrets       []string
	InitArgs               []string
	AgentArgs              []string
	Env                    []corev1.EnvVar
	GatewayEnv             []corev1.EnvVar
	GRPCAgentEnv           []corev1.EnvVar
	// GatewayLifecycle and GatewayReadiness are the gateway proxy's, from
	// values alone (Istio's gateway template reads no annotations for them).
	GatewayLifecycle map[string]any
	GatewayReadiness struct{ InitialDelaySeconds, PeriodSeconds, FailureThreshold int32 }
	Resources        config.Resources
	Privileged       bool
	RunAsUser        int64
	// ProxyCapabilities are added to istio-proxy's (NET_ADMIN for TPROXY,
	// NET_BIND_SERVICE for capNetBindService).
	ProxyCapabilities []string
	// IptablesTrace is proxyMetadata IPTABLES_TRACE_LOGGING=true: the proxy
	// runs privileged, as root, to log iptables traces.
	IptablesTrace bool
	// SeccompProfile is values global.proxy.seccompProfile, on istio-proxy
	// and the init container.
	SeccompProfile map[string]any
	// HBONETunnel is the networking.istio.io/tunnel label, when
	// proxyMetadata ISTIO_META_ENABLE_HBONE is "true".
	HBONETunnel string
	// OutlierLogPath is the sidecar's --outlierLogPath.
	OutlierLogPath string
	// Certs are the certificate volumes.
	Certs                        certVolumes
	StatusPort                   int32
	ReadinessInitialDelaySeconds int32
	ReadinessPeriodSeconds       int32
	ReadinessFailureThreshold    int32
	StartupProbe                 bool
	StartupFailureThreshold      int32
	Hold                         bool
	Lifecycle                    map[string]any
	BootstrapOverride            string
	UserVolumes                  []corev1.Volume
	UserVolumeMounts             []corev1.VolumeMount
	TokenAudience                string
	DiscoveryHost                string
	ClusterDomain                string

	// Engine-only fields, not meant for templates.
	native          bool
	rewriteProbes   bool
	prometheusMerge bool
	// clusterEnv are the proxy variables set after rendering (clusterEnv).
	clusterEnv     map[string]string
	proxyImage     string
	proxyInitImage string
	proxyConfig    *meshv1alpha1.ProxyConfig
	// proxyConfigAnnotated is set when proxy.istio.io/config changed it.
	proxyConfigAnnotated bool
	workload             Workload
	namespace            string
	// datadogEnv is the sidecar's apm.datadoghq.com/env (datadog tracer).
	datadogEnv []corev1.EnvVar
}

// annotations reads a pod's annotations: raw, and the value each
// annotation of the table the pod carries parsed to (parseAnnotations).
type annotations struct {
	raw    map[string]string
	values map[string]any
}

// value is the parsed value of the table's annotation name, when the pod
// carries it.
func value[T any](a annotations, name string) (T, bool) {
	v, ok := a.values[name].(T)
	return v, ok
}

// injectionPrefixes are the prefixes of the annotations that change
// injection output; their values reach the templates.
var injectionPrefixes = []string{"sidecar.istio.io/", "traffic.sidecar.istio.io/", "proxy.istio.io/",
	"status.sidecar.istio.io/", "readiness.status.sidecar.istio.io/", "inject.istio.io/", "prometheus.istio.io/", "istio.io/"}

// checkPrintable refuses a control character in the value of an injection
// annotation: the templates write the values into YAML, which cannot hold
// them (tab, newline and carriage return are allowed).
func (a annotations) checkPrintable() error {
	for name, v := range a.raw {
		if !slices.ContainsFunc(injectionPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		for _, r := range v {
			if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r <= 0x9f && r != 0x85) || r == 0xfffe || r == 0xffff {
				return fieldError(name, v, fmt.Errorf("control character %U is not allowed", r))
			}
		}
	}
	return nil
}

func (a annotations) get(name string) (string, bool) {
	v, ok := a.raw[name]
	return v, ok
}

func (a annotations) str(name, def string) string {
	if v, ok := a.raw[name]; ok {
		return v
	}
	return def
}

// uint32 is the parsed value of an unsigned integer annotation, or def.
func (a annotations) uint32(name string, def int32) int32 {
	if n, ok := value[int32](a, name); ok {
		return n
	}
	return def
}

// boolean is the parsed value of a boolean annotation, or def.
func (a annotations) boolean(name string, def bool) bool {
	if b, ok := value[bool](a, name); ok {
		return b
	}
	return def
}

// resolve computes the Settings for pod, validating every annotation that
// changes the output. Each part is resolved in its own step, in order:
// later steps read what earlier ones set.
func (e *Engine) resolve(pod *corev1.Pod, ns string, req Request) (*settings, error) {
	cfg, v := e.cfg, &e.cfg.Typed
	pv := &v.Global.Proxy
	a := annotations{raw: pod.Annotations}
	if err := a.checkPrintable(); err != nil {
		return nil, err
	}
	if err := a.parseAnnotations(); err != nil {
		return nil, err
	}
	s := &settings{Revision: cfg.RevisionName(), namespace: ns}
	if req.Workload != nil && req.Workload.Name != "" {
		s.workload = *req.Workload
	} else {
		s.workload = WorkloadOf(pod)
	}
	pc, err := s.resolveProxyConfig(cfg, a)
	if err != nil {
		return nil, err
	}
	s.resolveInterception(cfg, pc, a, req.NativeSidecars)
	s.resolveProbes(cfg, pc, a)
	if err := s.resolveImages(cfg, a, pc); err != nil {
		return nil, err
	}
	s.ImagePullPolicy = v.Global.ImagePullPolicy
	s.ImagePullSecrets = v.Global.ImagePullSecrets
	agentLevel := s.resolveAgentArgs(cfg, a)
	s.resolveResources(pv, a)
	s.resolveSecurity(pv, pc, a)
	s.resolveCerts(cfg, pod, pc)
	if raw, ok := a.get(annotationDatadogEnv); ok && pv.Tracer == "datadog" {
		if s.datadogEnv, err = datadogEnv(raw); err != nil {
			return nil, fieldError(annotationDatadogEnv, raw, err)
		}
	}
	s.resolveTraffic(cfg, a, agentLevel)
	s.resolveVolumes(cfg, pc, a)
	s.resolveMetadata(cfg, pod, a)
	s.clusterEnv = e.clusterEnv(pod, req.ProxyEnv)
	s.Env = e.proxyEnv(pod, s, req.ProxyEnv, false)
	s.GatewayEnv = e.proxyEnv(pod, s, req.ProxyEnv, true)
	s.GRPCAgentEnv = e.grpcAgentEnv(pod, s, req.ProxyEnv)
	return s, nil
}

// resolveProxyConfig is the mesh's default proxy config overlaid with
// proxy.istio.io/config; without the annotation, the config's own
// (read-only) default.
func (s *settings) resolveProxyConfig(cfg *config.Config, a annotations) (*meshv1alpha1.ProxyConfig, error) {
	pc := cfg.Mesh.GetDefaultConfig()
	if over, ok := value[*meshv1alpha1.ProxyConfig](a, annotationProxyConfig); ok {
		if pc == nil {
			pc = over
		} else {
			pc = proto.Clone(pc).(*meshv1alpha1.ProxyConfig)
			proto.Merge(pc, over)
		}
		s.proxyConfigAnnotated = true
	}
	s.proxyConfig = pc
	return pc, nil
}

// resolveInterception sets the interception mode, native sidecars, CNI
// and whether an init container sets up traffic capture.
func (s *settings) resolveInterception(cfg *config.Config, pc *meshv1alpha1.ProxyConfig, a annotations, nativeDefault bool) {
	s.InterceptionMode = pc.GetInterceptionMode().String()
	s.InterceptionMode = a.str(annotation.SidecarInterceptionMode.Name, s.InterceptionMode)
	s.native = a.boolean(annotation.SidecarNativeSidecar.Name, nativeDefault)
	s.CNI = cfg.Typed.Pilot.CNI.Enabled
	s.InitContainer = s.InterceptionMode != "NONE"
}

// resolveProbes sets the status port, the proxy's own probes, probe
// rewriting, Prometheus merging and holding the application.
func (s *settings) resolveProbes(cfg *config.Config, pc *meshv1alpha1.ProxyConfig, a annotations) {
	v := &cfg.Typed
	pv := &v.Global.Proxy
	s.StatusPort = pv.StatusPort
	if pc.GetStatusPort() != cfg.DefaultProxyConfig.GetStatusPort() {
		s.StatusPort = pc.GetStatusPort()
	}
	if port, ok := value[int32](a, annotation.SidecarStatusPort.Name); ok {
		s.StatusPort = port
	}
	s.ReadinessInitialDelaySeconds = a.uint32(annotation.SidecarStatusReadinessInitialDelaySeconds.Name, pv.ReadinessInitialDelaySeconds)
	s.ReadinessPeriodSeconds = a.uint32(annotation.SidecarStatusReadinessPeriodSeconds.Name, pv.ReadinessPeriodSeconds)
	s.ReadinessFailureThreshold = a.uint32(annotation.SidecarStatusReadinessFailureThreshold.Name, pv.ReadinessFailureThreshold)
	s.StartupProbe, s.StartupFailureThreshold = pv.StartupProbe.Enabled, pv.StartupProbe.FailureThreshold
	s.rewriteProbes = a.boolean(annotation.SidecarRewriteAppHTTPProbers.Name, v.SidecarInjectorWebhook.RewriteAppHTTPProbe)
	meshMerge := cfg.Mesh.GetEnablePrometheusMerge() == nil || cfg.Mesh.GetEnablePrometheusMerge().GetValue()
	s.prometheusMerge = a.boolean(annotation.PrometheusMergeMetrics.Name, meshMerge)
	s.Hold = pv.HoldApplication
	if h := pc.GetHoldApplicationUntilProxyStarts(); h != nil {
		s.Hold = h.GetValue()
	}
}

// resolveAgentArgs sets the cluster domain and pilot-agent's arguments
// (log levels), and returns the agent's log level.
func (s *settings) resolveAgentArgs(cfg *config.Config, a annotations) string {
	v := &cfg.Typed
	pv := &v.Global.Proxy
	logLevel := a.str(annotation.SidecarLogLevel.Name, pv.LogLevel)
	componentLevel := a.str(annotation.SidecarComponentLogLevel.Name, pv.ComponentLogLevel)
	agentLevel := a.str(annotation.SidecarAgentLogLevel.Name, v.Global.Logging.Level)
	s.ClusterDomain = pv.ClusterDomain
	if s.ClusterDomain == "" {
		s.ClusterDomain = "cluster.local"
	}
	s.AgentArgs = []string{
		"--domain", "$(POD_NAMESPACE).svc." + s.ClusterDomain,
		"--proxyLogLevel=" + logLevel,
		"--proxyComponentLogLevel=" + componentLevel,
		"--log_output_level=" + agentLevel,
	}
	if p := v.Global.STS.ServicePort; p != 0 {
		s.AgentArgs = append(s.AgentArgs, "--stsPort="+strconv.Itoa(int(p)))
	}
	if v.Global.LogAsJSON {
		s.AgentArgs = append(s.AgentArgs, "--log_as_json")
	}
	return agentLevel
}

// resolveSecurity sets the proxy's user and privileges, its lifecycle
// hooks and the gateway's readiness.
func (s *settings) resolveSecurity(pv *config.ProxyValues, pc *meshv1alpha1.ProxyConfig, a annotations) {
	s.Privileged = pv.Privileged
	s.RunAsUser = proxyUID
	capNetBind := a.str(annotationCapNetBindService, fmt.Sprint(pv.CapNetBindService)) == "true"
	if s.InterceptionMode == "TPROXY" {
		s.ProxyCapabilities = append(s.ProxyCapabilities, "NET_ADMIN")
	}
	if capNetBind {
		s.ProxyCapabilities = append(s.ProxyCapabilities, "NET_BIND_SERVICE")
	}
	if len(s.ProxyCapabilities) > 0 {
		s.RunAsUser = 0
	}
	md := pc.GetProxyMetadata()
	s.IptablesTrace = md["IPTABLES_TRACE_LOGGING"] == "true"
	if len(pv.SeccompProfile) > 0 {
		s.SeccompProfile = pv.SeccompProfile
	}
	s.OutlierLogPath = pv.OutlierLogPath
	if !s.native && !s.Hold && len(pv.Lifecycle) > 0 {
		s.Lifecycle = pv.Lifecycle
	}
	if len(pv.Lifecycle) > 0 {
		s.GatewayLifecycle = pv.Lifecycle
	}
	s.GatewayReadiness.InitialDelaySeconds = pv.ReadinessInitialDelaySeconds
	s.GatewayReadiness.PeriodSeconds = pv.ReadinessPeriodSeconds
	s.GatewayReadiness.FailureThreshold = pv.ReadinessFailureThreshold
}

// resolveVolumes sets the bootstrap override, the user's volumes, the
// token audience and the discovery host.
func (s *settings) resolveVolumes(cfg *config.Config, pc *meshv1alpha1.ProxyConfig, a annotations) {
	s.BootstrapOverride = a.str(annotation.SidecarBootstrapOverride.Name, "")
	s.resolveUserVolumes(a)
	s.TokenAudience = cfg.Typed.Global.SDS.Token.Aud
	if s.TokenAudience == "" {
		s.TokenAudience = "istio-ca"
	}
	s.DiscoveryHost = strings.TrimSuffix(pc.GetDiscoveryAddress(), ":15012")
}

// resolveMetadata sets the canonical service labels and the default
// containers for kubectl.
func (s *settings) resolveMetadata(cfg *config.Config, pod *corev1.Pod, a annotations) {
	s.CanonicalName, s.CanonicalRevision = canonical(pod, s.workload.Name, cfg.Follows(31))
	s.CanonicalNameUntrimmed = canonicalName(pod, s.workload.Name)
	if _, ok := a.get("kubectl.kubernetes.io/default-container"); !ok {
		s.DefaultContainer = firstAppContainer(pod)
	}
	if _, ok := a.get("kubectl.kubernetes.io/default-logs-container"); !ok {
		s.DefaultLogsContainer = firstAppContainer(pod)
	}
}

func (s *settings) resolveImages(cfg *config.Config, a annotations, pc *meshv1alpha1.ProxyConfig) error {
	g := &cfg.Typed.Global
	imageType := g.Variant
	if t := pc.GetImage().GetImageType(); t != "" {
		imageType = t
	}
	imageType = a.str(annotation.SidecarProxyImageType.Name, imageType)
	if err := checkImageType(imageType); err != nil { // a variant of the configuration
		return fieldError(annotation.SidecarProxyImageType.Name, imageType, err)
	}
	if imageType == "default" {
		imageType = ""
	}
	tag := fmt.Sprint(g.Tag)
	image := func(name string) string {
		if strings.Contains(name, "/") {
			return name
		}
		ref := g.Hub + "/" + name + ":" + tag
		if imageType != "" {
			ref += "-" + imageType
		}
		return ref
	}
	s.proxyImage = image(g.Proxy.Image)
	initName := g.ProxyInit.Image
	if initName == "" {
		initName = g.Proxy.Image
	}
	s.proxyInitImage = image(initName)
	if !cfg.Follows(31) && !strings.Contains(initName, "/") {
		// Before 1.31, istio-init ran the proxy's image unless
		// proxy_init.image was a full reference.
		s.proxyInitImage = s.proxyImage
	}
	if img, ok := a.get(annotation.SidecarProxyImage.Name); ok {
		s.proxyImage, s.proxyInitImage = img, img
	}
	return nil
}

var resourceAnnotations = []struct{ name, kind, resource string }{
	{annotation.SidecarProxyCPU.Name, "requests", "cpu"},
	{annotation.SidecarProxyMemory.Name, "requests", "memory"},
	{annotation.SidecarProxyCPULimit.Name, "limits", "cpu"},
	{annotation.SidecarProxyMemoryLimit.Name, "limits", "memory"},
}

// resolveResources applies Istio's all-or-nothing rule: when any of the four
// resource annotations is set, only the annotated values are used.
func (s *settings) resolveResources(pv *config.ProxyValues, a annotations) {
	any := false
	for _, r := range resourceAnnotations {
		if _, ok := a.raw[r.name]; ok {
			any = true
		}
	}
	if !any {
		s.Resources = pv.Resources
		return
	}
	res := config.Resources{}
	for _, r := range resourceAnnotations {
		q, ok := value[resource.Quantity](a, r.name)
		if !ok {
			continue
		}
		m := &res.Requests
		if r.kind == "limits" {
			m = &res.Limits
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[r.resource] = q.String()
	}
	s.Resources = res
}

func (s *settings) resolveTraffic(cfg *config.Config, a annotations, agentLevel string) {
	pv := &cfg.Typed.Global.Proxy
	get := func(name, def string) string { return strings.TrimSpace(a.str(name, def)) }
	// present: the annotation is set (even to ""), or the value is not
	// empty; Istio's templates then write the flag, empty or not.
	present := func(name, def string) bool { _, ok := a.get(name); return ok || def != "" }
	reroute, kubevirt := annotation.IoIstioRerouteVirtualInterfaces.Name, annotation.SidecarTrafficKubevirtInterfaces.Name
	t := traffic{
		inclIP:     get(annotation.SidecarTrafficIncludeOutboundIPRanges.Name, pv.IncludeIPRanges),
		exclIP:     get(annotation.SidecarTrafficExcludeOutboundIPRanges.Name, pv.ExcludeIPRanges),
		inclIn:     get(annotation.SidecarTrafficIncludeInboundPorts.Name, pv.IncludeInboundPorts),
		exclIn:     get(annotation.SidecarTrafficExcludeInboundPorts.Name, pv.ExcludeInboundPorts),
		inclOut:    get(annotation.SidecarTrafficIncludeOutboundPorts.Name, pv.IncludeOutboundPorts),
		exclOut:    get(annotation.SidecarTrafficExcludeOutboundPorts.Name, pv.ExcludeOutboundPorts),
		exclIf:     get(annotation.SidecarTrafficExcludeInterfaces.Name, ""),
		inclOutSet: present(annotation.SidecarTrafficIncludeOutboundPorts.Name, pv.IncludeOutboundPorts),
		exclOutSet: present(annotation.SidecarTrafficExcludeOutboundPorts.Name, pv.ExcludeOutboundPorts),
		exclIfSet:  present(annotation.SidecarTrafficExcludeInterfaces.Name, ""),
		// reroute-virtual-interfaces wins over kubevirtInterfaces.
		reroute:    get(reroute, get(kubevirt, "")),
		rerouteSet: present(reroute, "") || present(kubevirt, ""),
	}
	status := ""
	if s.StatusPort != 0 {
		status = strconv.Itoa(int(s.StatusPort))
	}
	excludeIn := envoyPromPort + "," + agentHealthPort
	if t.exclIn != "" {
		excludeIn += "," + t.exclIn
	}
	excludeIn = templates.ExcludeInboundPort(status, excludeIn)

	uid := strconv.Itoa(proxyUID)
	args := []string{
		"istio-iptables",
		"-p", strconv.Itoa(int(cmp.Or[int32](cfg.Mesh.GetProxyListenPort(), 15001))),
		"-z", strconv.Itoa(int(cmp.Or[int32](cfg.Mesh.GetProxyInboundListenPort(), 15006))),
		"-u", uid,
		"-m", s.InterceptionMode,
		"-i", t.inclIP,
		"-x", t.exclIP,
		"-b", t.inclIn,
		"-d", excludeIn,
	}
	if t.inclOutSet {
		args = append(args, "-q", t.inclOut)
	}
	if t.exclOutSet {
		args = append(args, "-o", t.exclOut)
	}
	if t.rerouteSet {
		args = append(args, "-k", t.reroute)
	}
	if t.exclIfSet {
		args = append(args, "-c", t.exclIf)
	}
	args = append(args, "--log_output_level="+agentLevel)
	args = append(args, initModeArgs(&cfg.Typed.Global, s.CNI)...)
	if s.CNI {
		s.setCNIAnnotations(cfg, a, status, t)
	}
	s.InitArgs = args
}

// traffic are the resolved traffic-capture settings; the *Set fields say
// whether istio-iptables gets the flag at all.
type traffic struct {
	inclIP, exclIP, inclIn, exclIn, inclOut, exclOut, exclIf, reroute string
	inclOutSet, exclOutSet, exclIfSet, rerouteSet                     bool
}

// setCNIAnnotations writes the traffic settings as the annotations the
// Istio CNI plugin reads in place of istio-init's arguments.
func (s *settings) setCNIAnnotations(cfg *config.Config, a annotations, status string, t traffic) {
	s.CNIAnnotations = map[string]string{
		annotation.SidecarInterceptionMode.Name:           s.InterceptionMode,
		annotation.SidecarTrafficExcludeInboundPorts.Name: templates.ExcludeInboundPort(status, t.exclIn),
	}
	set := func(k, v string) {
		if v != "" {
			s.CNIAnnotations[k] = v
		}
	}
	set(annotation.SidecarTrafficIncludeOutboundIPRanges.Name, t.inclIP)
	set(annotation.SidecarTrafficExcludeOutboundIPRanges.Name, t.exclIP)
	s.CNIAnnotations[annotation.SidecarTrafficIncludeInboundPorts.Name] = t.inclIn
	if t.inclOutSet {
		s.CNIAnnotations[annotation.SidecarTrafficIncludeOutboundPorts.Name] = t.inclOut
	}
	if t.exclOutSet {
		s.CNIAnnotations[annotation.SidecarTrafficExcludeOutboundPorts.Name] = t.exclOut
	}
	set(annotation.SidecarTrafficExcludeInterfaces.Name, t.exclIf)
	set(annotation.SidecarTrafficKubevirtInterfaces.Name, a.str(annotation.SidecarTrafficKubevirtInterfaces.Name, ""))
	set(annotation.IoIstioRerouteVirtualInterfaces.Name, a.str(annotation.IoIstioRerouteVirtualInterfaces.Name, ""))
	if cfg.Typed.Pilot.CNI.Provider == "multus" {
		s.CNIAnnotations["k8s.v1.cni.cncf.io/networks"] = templates.AppendMultusNetwork(a.str("k8s.v1.cni.cncf.io/networks", ""), "default/istio-cni")
	}
}

// initModeArgs are istio-iptables' trailing flags, in Istio's order: JSON
// logs, then validation only (CNI) or forced rule application, then
// nftables.
func initModeArgs(g *config.GlobalValues, cni bool) []string {
	var args []string
	if g.LogAsJSON {
		args = append(args, "--log_as_json")
	}
	switch {
	case cni:
		args = append(args, "--run-validation", "--skip-rule-apply")
	case g.ProxyInit.ForceApplyIptables:
		args = append(args, "--force-apply")
	}
	if g.NativeNftables {
		args = append(args, "--native-nftables")
	}
	return args
}

// resolveUserVolumes reads the parsed user volumes and mounts, sorted by
// name.
func (s *settings) resolveUserVolumes(a annotations) {
	if vols, ok := value[map[string]corev1.Volume](a, annotation.SidecarUserVolume.Name); ok {
		for _, name := range slices.Sorted(maps.Keys(vols)) {
			v := vols[name]
			v.Name = name
			s.UserVolumes = append(s.UserVolumes, v)
		}
	}
	if mounts, ok := value[map[string]corev1.VolumeMount](a, annotation.SidecarUserVolumeMount.Name); ok {
		for _, name := range slices.Sorted(maps.Keys(mounts)) {
			m := mounts[name]
			m.Name = name
			s.UserVolumeMounts = append(s.UserVolumeMounts, m)
		}
	}
}

// strictJSON decodes raw into out, refusing unknown fields.
func strictJSON(raw string, out any) error {
	strict, err := json.UnmarshalStrict([]byte(raw), out)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return strict[0]
	}
	return nil
}

// canonical returns the canonical service name and revision labels: kept
// when set, else derived from the app labels, else the workload name and
// "latest".
func canonical(pod *corev1.Pod, workload string, trimAll bool) (string, string) {
	l := pod.Labels
	name := canonicalName(pod, workload)
	if len(name) > 63 {
		name = name[:63]
	}
	if trimAll {
		name = strings.Trim(name, "-_.")
	} else {
		// Before 1.31, only trailing dashes were trimmed.
		name = strings.TrimRight(name, "-")
	}
	rev := cmp.Or(l["service.istio.io/canonical-revision"], l["app.kubernetes.io/version"], l["version"], "latest")
	return name, rev
}

// canonicalName is the canonical name as the pod's labels or workload
// give it, untrimmed.
func canonicalName(pod *corev1.Pod, workload string) string {
	l := pod.Labels
	return cmp.Or(l["service.istio.io/canonical-name"], l["app.kubernetes.io/name"], l["app"], workload)
}

func firstAppContainer(pod *corev1.Pod) string {
	for i := range pod.Spec.Containers {
		if n := pod.Spec.Containers[i].Name; n != ProxyContainerName {
			return n
		}
	}
	return ""
}

// certVolumes are the volumes that carry the proxy's certificates, as
// values choose them.
type certVolumes struct {
	// GKE is values global.caName GkeWorkloadCertificate: GKE's CSI driver
	// serves the workload certificates in place of an emptyDir.
	GKE bool
	// IstiodCA is values global.pilotCertProvider istiod: istiod's root
	// certificate and CRL are mounted.
	IstiodCA bool
	// RootCert names the root certificate's ConfigMap or, when
	// ClusterTrustBundle is set, the ClusterTrustBundle.
	RootCert           string
	ClusterTrustBundle bool
	// CRL names the CRL ConfigMap.
	CRL string
	// MtlsSecret, when set, is the Secret mounted at /etc/certs/ (values
	// global.mountMtlsCerts): istio.<service account>.
	MtlsSecret string
	// LightstepDir, when set, is where the lightstep.cacert Secret is
	// mounted: the directory of the ProxyConfig's tracing CA certificates.
	LightstepDir string
}

// gkeCAName is the global.caName that mounts GKE's workload certificates.
const gkeCAName = "GkeWorkloadCertificate"

// resolveCerts sets the certificate volumes and the tracer's settings
// (Datadog's environment is added by the environment's builder).
func (s *settings) resolveCerts(cfg *config.Config, pod *corev1.Pod, pc *meshv1alpha1.ProxyConfig) {
	g := &cfg.Typed.Global
	c := &s.Certs
	c.GKE = g.CAName == gkeCAName
	c.IstiodCA = g.PilotCertProvider == "istiod"
	c.ClusterTrustBundle = cfg.ClusterTrustBundle
	c.RootCert = cmp.Or(g.TrustBundleName, "istio-ca-root-cert")
	if c.ClusterTrustBundle {
		c.RootCert = "istio.io:istiod-ca:" + cmp.Or(g.TrustBundleName, "root-cert")
	}
	c.CRL = cmp.Or(cfg.Typed.Pilot.CRLConfigMapName, "istio-ca-crl")
	if g.MountMtlsCerts {
		c.MtlsSecret = "istio." + cmp.Or(pod.Spec.ServiceAccountName, "default")
	}
	if tls := pc.GetTracing().GetTlsSettings(); g.Proxy.Tracer == "lightstep" && tls != nil {
		c.LightstepDir, _ = path.Split(tls.GetCaCertificates())
	}
	if pc.GetProxyMetadata()["ISTIO_META_ENABLE_HBONE"] == "true" {
		s.HBONETunnel = cmp.Or(pod.Labels["networking.istio.io/tunnel"], "http")
	}
}
