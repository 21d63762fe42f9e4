package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"

	"github.com/meshinject/meshinject/templates"
)

// freeFormValues are read as a whole (a Kubernetes object, or a map of
// any keys): every key below them is accepted.
var freeFormValues = []string{
	"global.proxy.resources",
	"global.proxy.lifecycle",
	"global.proxy.seccompProfile",
	"gateways.securityContext",
	// istiod's environment: injection reads COMPLIANCE_POLICY and
	// ENABLE_CLUSTER_TRUST_BUNDLE_API, istiod the rest.
	"pilot.env",
	// The Istio minor the built-ins follow (Istio's chart reads it to
	// pick a compatibility profile).
	"compatibilityVersion",
}

// inertValues are the keys Istio's istio-sidecar-injector ConfigMap
// carries that injection does not read, with what does. Istio's chart
// passes its whole global tree into the ConfigMap; these keys are no gap,
// so they load without a warning. The compatibility tier checks that none
// of them is read by Istio's injection templates.
var inertValues = map[string]string{
	"gateways.seccompProfile":                          "istiod's Gateway API deployment templates (kube-gateway, waypoint)",
	"global.waypoint":                                  "istiod's waypoint deployment template",
	"global.certSigners":                               "istiod's ClusterRole for certificate signers",
	"global.configCluster":                             "the chart (a config cluster's istiod)",
	"global.configValidation":                          "the chart (istiod's validating webhook)",
	"global.defaultPodDisruptionBudget":                "the chart (istiod's PodDisruptionBudget)",
	"global.defaultResources":                          "the chart (istiod's resources)",
	"global.externalIstiod":                            "the chart (a remote cluster's istiod)",
	"global.istiod":                                    "istiod (analysis)",
	"global.meshNetworks":                              "istiod (the meshNetworks of its ConfigMap)",
	"global.networkPolicy":                             "the chart (istiod's NetworkPolicy)",
	"global.omitSidecarInjectorConfigMap":              "the chart (whether it writes this ConfigMap)",
	"global.operatorManageWebhooks":                    "the chart (webhook ownership)",
	"global.priorityClassName":                         "the chart (istiod's priority class)",
	"global.proxy.autoInject":                          "the chart (the injection config's policy)",
	"global.remotePilotAddress":                        "the chart (a remote cluster's istiod address)",
	"global.resourceScope":                             "the chart (which resources it installs)",
	"sidecarInjectorWebhook.alwaysInjectSelector":      "the chart, into the injection config (read there)",
	"sidecarInjectorWebhook.neverInjectSelector":       "the chart, into the injection config (read there)",
	"sidecarInjectorWebhook.defaultTemplates":          "the chart, into the injection config (read there)",
	"sidecarInjectorWebhook.injectedAnnotations":       "the chart, into the injection config (read there)",
	"sidecarInjectorWebhook.templates":                 "the chart, into the injection config (read there)",
	"sidecarInjectorWebhook.enableNamespacesByDefault": "the chart (the webhook's namespace selector)",
	"sidecarInjectorWebhook.reinvocationPolicy":        "the chart (the webhook's reinvocation policy)",
}

// InertValues returns the keys Istio's injector ConfigMap carries that
// injection does not read, with what reads them.
func InertValues() map[string]string { return maps.Clone(inertValues) }

// keyChecker tells the values keys injection reads from the rest.
type keyChecker struct {
	// known is the default values tree: every key in it is read.
	known map[string]any
	// read are the paths the compiled templates read, and the free-form
	// and inert ones: they and everything below them are accepted.
	read []string
}

func newKeyChecker(defaults map[string]any, tmpls map[string]*template.Template) *keyChecker {
	k := &keyChecker{known: defaults, read: slices.Clone(freeFormValues)}
	k.read = slices.AppendSeq(k.read, maps.Keys(inertValues))
	for _, name := range slices.Sorted(maps.Keys(tmpls)) {
		k.read = append(k.read, templates.ValueReads(tmpls[name])...)
	}
	return k
}

// covered reports whether path is read as a whole by a template (or lies
// below such a read), is free-form, or is inert; under reports whether a
// read lies below it.
func (k *keyChecker) covered(path string) (covered, under bool) {
	for _, r := range k.read {
		switch {
		case r == "" || path == r || strings.HasPrefix(path, r+"."):
			return true, false
		case strings.HasPrefix(r, path+"."):
			under = true
		}
	}
	return false, under
}

// unread returns the paths of user that injection does not read, sorted:
// the first key of each branch that is in neither the defaults nor read.
func (k *keyChecker) unread(user map[string]any) []string {
	var out []string
	var walk func(user, known map[string]any, prefix string)
	walk = func(user, known map[string]any, prefix string) {
		for _, key := range slices.Sorted(maps.Keys(user)) {
			path := prefix + key
			covered, under := k.covered(path)
			if covered {
				continue
			}
			def, isDefault := known[key]
			um, isMap := user[key].(map[string]any)
			switch {
			case isMap && (isDefault || under):
				dm, _ := def.(map[string]any)
				walk(um, dm, path+".")
			case !isDefault:
				out = append(out, path)
			}
		}
	}
	walk(user, k.known, "")
	return out
}

// unreadWarning is the warning for a values key injection does not read.
func unreadWarning(path string) string {
	return fmt.Sprintf("values key %s is not read by injection (no template or step reads it, in meshinject or in Istio's injector): it is ignored", path)
}
