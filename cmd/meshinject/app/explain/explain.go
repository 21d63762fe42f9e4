// Package explain says whether and why meshinject would inject a pod: which
// entry of meshinject's MutatingWebhookConfiguration (as deploy/ installs
// it) the API server would send the pod to, given the namespace's labels,
// the engine's decision and its reason, the templates and where they came
// from, the annotations that change the output, and the diff of the pod.
package explain

import (
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/deploy"
	"github.com/meshinject/meshinject/internal/inject"
)

// Report is what explain says about one pod. Its JSON form is the stable
// schema of `meshinject explain -o json` (documented in the README).
type Report struct {
	// Object is the pod or workload the pod comes from.
	Object Object `json:"object"`
	// Webhook says which entries of meshinject's configuration would be
	// called for the pod.
	Webhook webhook `json:"webhook"`
	// Decision is the engine's.
	Decision decision `json:"decision"`
	// Templates are the templates applied and where their names came from.
	Templates *templateList `json:"templates,omitempty"`
	// Annotations are the pod's annotations that change injection.
	Annotations []annotation `json:"annotations,omitempty"`
	// Warnings are the engine's notes.
	Warnings []string `json:"warnings,omitempty"`
	// Hints say how to get what the pod seems to ask for.
	Hints []string `json:"hints,omitempty"`
	// Diff is the unified diff of the pod (YAML) before and after
	// injection; empty when not injected.
	Diff string `json:"diff,omitempty"`
}

// Object names a pod or workload.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
}

// webhook is the API server's side: the configuration's entries, whether
// each would match, and whether the pod is sent to meshinject at all.
type webhook struct {
	Configuration string  `json:"configuration"`
	Entries       []entry `json:"entries"`
	// Sent is true when an entry matches: the API server calls the webhook.
	Sent bool `json:"sent"`
}

// entry is one webhook entry and why it matches or not.
type entry struct {
	Name    string `json:"name"`
	Matches bool   `json:"matches"`
	// Reason is the first selector requirement that fails, or what matched.
	Reason string `json:"reason"`
}

// decision is the engine's decision.
// outcome is a decision's result.
type outcome string

// The results of a decision.
const (
	resultInjected outcome = "injected"
	resultSkipped  outcome = "skipped"
	resultDenied   outcome = "denied"
	resultError    outcome = "error"
	resultNotSent  outcome = "not-sent"
)

type decision struct {
	// Result is injected, skipped, denied, error or not-sent (no entry
	// matches, so the engine never sees the pod; the engine's decision
	// is still given).
	Result outcome `json:"result"`
	// Reason says why it was skipped or denied.
	Reason string `json:"reason,omitempty"`
	// Kind is the skip's fixed kind (the metric's reason label).
	Kind string `json:"kind,omitempty"`
	// Field and Value name the annotation or field that was refused.
	Field string `json:"field,omitempty"`
	Value string `json:"value,omitempty"`
}

// templateList are the templates applied.
type templateList struct {
	Names []string `json:"names"`
	// Source is "annotation" (inject.istio.io/templates) or "default"
	// (the configuration's defaultTemplates).
	Source string `json:"source"`
	// Aliases are the aliases the names went through, alias to templates.
	Aliases map[string][]string `json:"aliases,omitempty"`
}

// annotation is one injection annotation on the pod.
type annotation struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Options configures Explain.
type Options struct {
	// NamespaceLabels are the labels of the pod's namespace; the API server
	// always adds kubernetes.io/metadata.name. Default: none but that.
	NamespaceLabels map[string]string
	// NativeSidecars is the native-sidecar default before the pod's own
	// annotation.
	NativeSidecars bool
}

// Webhooks is meshinject's MutatingWebhookConfiguration for revision as
// deploy/ installs it: the base's for the default revision, the canary
// overlay's, renamed, for another.
func Webhooks(revision string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	raw := deploy.DefaultWebhooks
	if revision != "" && revision != "default" {
		raw = []byte(strings.ReplaceAll(string(deploy.RevisionWebhooks), "canary", revision))
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(raw, &mwc); err != nil {
		return nil, fmt.Errorf("the embedded webhook configuration: %w", err)
	}
	if revision != "" && revision != "default" {
		mwc.Name += "-" + revision // as the overlay's nameSuffix names it
	}
	return &mwc, nil
}

// Explain explains pod (of obj) for the engine.
func Explain(eng *inject.Engine, mwc *admissionregistrationv1.MutatingWebhookConfiguration, obj Object, pod *corev1.Pod, o Options) (Report, error) {
	r := Report{Object: obj, Webhook: matchWebhook(mwc, obj.Namespace, o.NamespaceLabels, pod)}
	r.Annotations = annotations(pod)
	before, err := yaml.Marshal(pod)
	if err != nil {
		return r, err
	}
	req := inject.Request{Pod: pod.DeepCopy(), Namespace: obj.Namespace, NativeSidecars: o.NativeSidecars}
	if obj.Kind != "Pod" {
		req.Workload = &inject.Workload{TypeMeta: metav1.TypeMeta{APIVersion: obj.APIVersion, Kind: obj.Kind}, Name: obj.Name}
	}
	res, err := eng.Inject(req)
	r.Warnings = res.Warnings
	var ie *inject.Error
	switch {
	case errors.As(err, &ie):
		r.Decision = decision{Result: resultDenied, Reason: err.Error(), Field: ie.Field, Value: ie.Value}
	case err != nil:
		return r, err
	case res.Skipped:
		r.Decision = decision{Result: resultSkipped, Reason: res.Reason, Kind: res.SkipKind}
	default:
		r.Decision = decision{Result: resultInjected}
		r.Templates = templates(eng, pod, res.Templates)
		after, err := yaml.Marshal(res.Pod)
		if err != nil {
			return r, err
		}
		r.Diff = unifiedDiff(string(before), string(after))
	}
	if !r.Webhook.Sent {
		if r.Decision.Result == resultInjected {
			r.Hints = notSentHints(pod)
		}
		r.Decision.Result, r.Decision.Reason = resultNotSent, notSentReason(r.Decision)
	}
	return r, nil
}

// notSentHints say how to have a pod the engine would inject sent to
// meshinject; the usual mistake is an opt-in annotation, which selectors
// cannot see.
func notSentHints(pod *corev1.Pod) []string {
	if v, ok := pod.Annotations[inject.AnnotationInject]; ok && v == "true" {
		if _, labelled := pod.Labels[inject.AnnotationInject]; !labelled {
			return []string{inject.AnnotationInject + ` is an annotation here; the webhook's selectors read labels, so set it as a pod label (sidecar.istio.io/inject: "true"), or label the namespace istio-injection=enabled`}
		}
	}
	return []string{"label the namespace istio-injection=enabled (or istio.io/rev=<revision>), or the pod sidecar.istio.io/inject=true"}
}

// notSentReason says that no entry matches, and what the engine would
// have done had one.
func notSentReason(d decision) string {
	would := "inject it"
	switch d.Result {
	case resultSkipped:
		would = "skip it: " + d.Reason
	case resultDenied:
		would = "refuse it: " + d.Reason
	}
	if d.Reason != "" && d.Result == resultInjected {
		would += " (" + d.Reason + ")"
	}
	return "no webhook entry matches, so the API server does not call meshinject (the engine would " + would + ")"
}

// matchWebhook evaluates each entry's selectors and match conditions as
// the API server does.
func matchWebhook(mwc *admissionregistrationv1.MutatingWebhookConfiguration, ns string, nsLabels map[string]string, pod *corev1.Pod) webhook {
	all := map[string]string{"kubernetes.io/metadata.name": ns}
	for k, v := range nsLabels {
		all[k] = v
	}
	w := webhook{Configuration: mwc.Name}
	for _, e := range mwc.Webhooks {
		ok, why := matches(e.NamespaceSelector, all, "namespace")
		if ok {
			ok, why = matches(e.ObjectSelector, pod.Labels, "pod")
		}
		if ok {
			ok, why = matchConditions(e.MatchConditions, pod, ns)
		}
		if ok {
			why = "namespace and pod selectors match"
		}
		w.Entries = append(w.Entries, entry{Name: e.Name, Matches: ok, Reason: why})
		w.Sent = w.Sent || ok
	}
	return w
}

// matches evaluates a selector requirement by requirement and names the
// first one that fails.
func matches(sel *metav1.LabelSelector, set map[string]string, what string) (bool, string) {
	if sel == nil {
		return true, ""
	}
	for _, req := range sel.MatchExpressions {
		one, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req}})
		if err != nil {
			return false, err.Error()
		}
		if !one.Matches(labels.Set(set)) {
			return false, fmt.Sprintf("%s label %s", what, describe(req, set))
		}
	}
	for k, v := range sel.MatchLabels {
		if set[k] != v {
			return false, fmt.Sprintf("%s label %s is %q, want %q", what, k, set[k], v)
		}
	}
	return true, ""
}

// describe says how set fails req.
func describe(req metav1.LabelSelectorRequirement, set map[string]string) string {
	v, has := set[req.Key]
	switch req.Operator {
	case metav1.LabelSelectorOpIn:
		if !has {
			return fmt.Sprintf("%s is not set (want %s)", req.Key, strings.Join(req.Values, " or "))
		}
		return fmt.Sprintf("%s=%s (want %s)", req.Key, v, strings.Join(req.Values, " or "))
	case metav1.LabelSelectorOpNotIn:
		return fmt.Sprintf("%s=%s (excluded)", req.Key, v)
	case metav1.LabelSelectorOpDoesNotExist:
		return fmt.Sprintf("%s=%s is set (want it absent)", req.Key, v)
	}
	return fmt.Sprintf("%s is not set (want it set)", req.Key)
}

// annotations are the pod's annotations in the engine's table, sorted.
func annotations(pod *corev1.Pod) []annotation {
	var out []annotation
	for _, name := range inject.AnnotationNames() {
		if v, ok := pod.Annotations[name]; ok {
			out = append(out, annotation{Name: name, Value: v})
		}
	}
	return out
}

// templates says where the applied templates' names came from.
func templates(eng *inject.Engine, pod *corev1.Pod, names []string) *templateList {
	t := &templateList{Names: names, Source: "default"}
	requested := eng.Config().Injection.DefaultTemplates
	if raw, ok := pod.Annotations[inject.AnnotationTemplates]; ok {
		t.Source, requested = "annotation", strings.Split(raw, ",")
	}
	for _, n := range requested {
		n = strings.TrimSpace(n)
		if alias, ok := eng.Config().Injection.Aliases[n]; ok {
			if t.Aliases == nil {
				t.Aliases = map[string][]string{}
			}
			t.Aliases[n] = alias
		}
	}
	return t
}
