// Package tags manages revision tags: a MutatingWebhookConfiguration per
// tag that sends the pods selecting the tag (istio.io/rev=<tag>) to a
// revision's injector, so that moving a tag moves its namespaces to
// another revision without relabelling them. The tag "default" also takes
// istio-injection=enabled namespaces and sidecar.istio.io/inject=true pods.
// The chart's revisionTags render the same objects.
package tags

import (
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// LabelRevision names the revision a configuration serves.
	LabelRevision = "meshinject.io/rev"
	// labelTag names the tag of a tag's configuration.
	labelTag = "meshinject.io/tag"
	// defaultTag is the tag that also takes the default revision's pods.
	defaultTag = "default"

	namePrefix  = "meshinject-revision-tag-"
	entrySuffix = ".meshinject.istio.io"
	labelRev    = "istio.io/rev"
)

// Name is the name of tag's MutatingWebhookConfiguration.
func Name(tag string) string { return namePrefix + tag }

// Build returns tag's configuration for the revision whose configuration
// is rev: rev's two revision entries selecting the tag instead, and, for
// the tag default, the entries of the default revision. Clients, policies,
// timeouts, match conditions, the caBundle and cert-manager's annotation
// are rev's.
func Build(rev *admissionregistrationv1.MutatingWebhookConfiguration, tag string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if err := validTag(tag); err != nil {
		return nil, err
	}
	revision := rev.Labels[LabelRevision]
	revNS, revObj := entry(rev, "rev.namespace"), entry(rev, "rev.object")
	if revNS == nil || revObj == nil {
		return nil, fmt.Errorf("MutatingWebhookConfiguration %s has no rev.namespace%s and rev.object%s entries", rev.Name, entrySuffix, entrySuffix)
	}
	out := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: Name(tag), Labels: map[string]string{
			"app.kubernetes.io/name": "meshinject", LabelRevision: revision, labelTag: tag,
		}},
	}
	if a, ok := rev.Annotations["cert-manager.io/inject-ca-from"]; ok {
		out.Annotations = map[string]string{"cert-manager.io/inject-ca-from": a}
	}
	ns, obj := revNS.DeepCopy(), revObj.DeepCopy()
	selectRevision(ns.NamespaceSelector, tag)
	selectRevision(obj.ObjectSelector, tag)
	out.Webhooks = append(out.Webhooks, *ns, *obj)
	if tag == defaultTag {
		out.Webhooks = append(out.Webhooks, defaultEntries(revNS, revObj)...)
	}
	return out, nil
}

// validTag refuses a tag that is not a DNS label (it names an object and
// a label value), naming it.
func validTag(tag string) error {
	if errs := validation.IsDNS1123Label(tag); len(errs) > 0 {
		return fmt.Errorf("tag %q: %s", tag, strings.Join(errs, "; "))
	}
	return nil
}

// entry is the configuration's entry named prefix + entrySuffix.
func entry(m *admissionregistrationv1.MutatingWebhookConfiguration, prefix string) *admissionregistrationv1.MutatingWebhook {
	for i := range m.Webhooks {
		if m.Webhooks[i].Name == prefix+entrySuffix {
			return &m.Webhooks[i]
		}
	}
	return nil
}

// selectRevision makes sel's istio.io/rev In [...] select tag.
func selectRevision(sel *metav1.LabelSelector, tag string) {
	if sel == nil {
		return
	}
	for i, e := range sel.MatchExpressions {
		if e.Key == labelRev && e.Operator == metav1.LabelSelectorOpIn {
			sel.MatchExpressions[i].Values = []string{tag}
		}
	}
}

// defaultEntries are the default revision's entries, on revNS's and
// revObj's clients: istio-injection=enabled namespaces (without the
// injector's own, which revNS excludes) and sidecar.istio.io/inject=true
// pods of namespaces with neither label.
func defaultEntries(revNS, revObj *admissionregistrationv1.MutatingWebhook) []admissionregistrationv1.MutatingWebhook {
	ns := revNS.DeepCopy()
	ns.Name = "namespace" + entrySuffix
	exprs := []metav1.LabelSelectorRequirement{{Key: "istio-injection", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}}}
	if revNS.NamespaceSelector != nil {
		for _, e := range revNS.NamespaceSelector.MatchExpressions {
			if e.Key == "kubernetes.io/metadata.name" {
				exprs = append(exprs, *e.DeepCopy())
			}
		}
	}
	ns.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: exprs}

	obj := revObj.DeepCopy()
	obj.Name = "object" + entrySuffix
	obj.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "istio-injection", Operator: metav1.LabelSelectorOpDoesNotExist},
		{Key: labelRev, Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	obj.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
		{Key: labelRev, Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	return []admissionregistrationv1.MutatingWebhook{*ns, *obj}
}

// servedNamespaces is the label selectors of the namespaces a tag serves.
func servedNamespaces(tag string) []string {
	s := []string{labelRev + "=" + tag + ",!istio-injection"}
	if tag == defaultTag {
		s = append(s, "istio-injection=enabled")
	}
	return slices.Clip(s)
}
