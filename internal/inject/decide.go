package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshinject/meshinject/internal/config"
)

// Annotations and labels the engine reads or writes.
const (
	AnnotationInject      = "sidecar.istio.io/inject"
	AnnotationStatus      = "sidecar.istio.io/status"
	annotationOverrides   = "proxy.istio.io/overrides"
	AnnotationTemplates   = "inject.istio.io/templates"
	annotationRevision    = "istio.io/rev"
	annotationProxyConfig = "proxy.istio.io/config"
	// annotationCapNetBindService ("true") gives istio-proxy
	// NET_BIND_SERVICE, as values global.proxy.capNetBindService does.
	annotationCapNetBindService = "sidecar.istio.io/capNetBindService"
	// annotationDatadogEnv is a JSON object of variables added to the
	// proxy's environment when values global.proxy.tracer is datadog.
	annotationDatadogEnv = "apm.datadoghq.com/env"
	// annotationUninject records what injection changed beyond the status
	// annotation (labels, annotations, probes, pod fields) so that Uninject
	// restores the pod exactly.
	annotationUninject = "meshinject.io/uninject"
)

// Skip kinds: bounded labels for why a pod was not injected.
const (
	SkipHostNetwork    = "host_network"
	SkipIgnoredNS      = "ignored_namespace"
	SkipExplicitOff    = "explicitly_disabled"
	skipNeverSelector  = "never_inject_selector"
	skipPolicyDisabled = "policy_disabled"
	SkipPolicyUnknown  = "policy_unknown"
)

// ignoredNamespaces are never injected.
var ignoredNamespaces = map[string]bool{
	"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true,
}

// decision is the outcome of Decide.
type decision struct {
	// Inject is true when the pod is to be injected.
	Inject bool
	// Reason says why not, when Inject is false.
	Reason string
	// Kind is the bounded skip kind, when Inject is false.
	Kind string
	// Warnings are notes for the user, e.g. an unrecognised inject value.
	Warnings []string
}

// decide applies the injection decision: host network, ignored namespaces,
// the explicit sidecar.istio.io/inject value (the label wins over the
// annotation), the never/always selectors and the policy. Namespace labels
// are not read here: the webhook's selectors apply them. With force, the
// policy is taken as enabled and selectors are ignored.
func decide(cfg *config.Config, pod *corev1.Pod, namespace string, force bool) decision {
	if pod.Spec.HostNetwork {
		return decision{Reason: "pod has hostNetwork", Kind: SkipHostNetwork}
	}
	if ignoredNamespaces[namespace] {
		return decision{Reason: fmt.Sprintf("namespace %s is never injected", namespace), Kind: SkipIgnoredNS}
	}
	var d decision
	value, source, explicit := "", "", false
	if v, ok := pod.Annotations[AnnotationInject]; ok {
		value, source, explicit = v, "annotation", true
	}
	if v, ok := pod.Labels[AnnotationInject]; ok {
		value, source, explicit = v, "label", true
	}
	if explicit {
		switch value {
		case "true":
			return decision{Inject: true}
		case "false":
			return decision{Reason: fmt.Sprintf("%s %s=false", source, AnnotationInject), Kind: SkipExplicitOff}
		case "":
		default:
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s %s=%q is neither true nor false; using the default", source, AnnotationInject, value))
		}
	}
	if force {
		d.Inject = true
		return d
	}
	set := labels.Set(pod.Labels)
	for _, sel := range cfg.NeverInject {
		if !sel.Empty() && sel.Matches(set) {
			d.Reason, d.Kind = fmt.Sprintf("pod labels match neverInjectSelector %s", sel), skipNeverSelector
			return d
		}
	}
	for _, sel := range cfg.AlwaysInject {
		if !sel.Empty() && sel.Matches(set) {
			d.Inject = true
			return d
		}
	}
	switch cfg.Injection.Policy {
	case "enabled":
		d.Inject = true
	case "disabled":
		d.Reason, d.Kind = "injection policy is disabled and the pod does not opt in", skipPolicyDisabled
	default:
		d.Reason, d.Kind = fmt.Sprintf("unknown injection policy %q", cfg.Injection.Policy), SkipPolicyUnknown
	}
	return d
}
