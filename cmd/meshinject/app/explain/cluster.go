package explain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
)

// checkResult is what check-inject says about one pod (or pod template) in a
// live cluster: every injector's webhook configuration that would be
// called for it, and, for an existing pod, whether it was injected.
type checkResult struct {
	Object Object `json:"object"`
	// Webhooks are the configurations that act on pod creation, each with
	// its verdict.
	Webhooks []webhookCheck `json:"webhooks"`
	// Injected says what the pod carries: the revision that injected it,
	// or nothing for a template or a pod that was not injected.
	Injected string `json:"injected,omitempty"`
	// Verdict is meshinject's engine on the pod, with the configuration
	// it serves in the cluster: injected, or why not.
	Verdict decision `json:"verdict"`
	// Warnings say what needs a person: more than one injector matching,
	// values keys meshinject's configuration carries that injection does
	// not read.
	Warnings []string `json:"warnings,omitempty"`
	// Hints say how to get what the pod seems to ask for.
	Hints []string `json:"hints,omitempty"`
}

// webhookCheck is one configuration's verdict: Istio's check-inject columns.
type webhookCheck struct {
	Webhook  string `json:"webhook"`
	Revision string `json:"revision"`
	Injected bool   `json:"injected"`
	Reason   string `json:"reason"`
}

// Target is what to check: a pod's labels, annotations and spec.
type Target struct {
	Object Object
	Pod    *corev1.Pod
	// Existing is true for a pod that exists (its annotations say whether
	// it was injected).
	Existing bool
}

// Checker reads the cluster's namespaces, webhook configurations and
// meshinject's configuration.
type Checker struct {
	// Client reads the cluster.
	Client kubernetes.Interface
	// ConfigNamespace and ConfigMap hold meshinject's configuration, as
	// deploy/ installs it. Default meshinject and meshinject-config.
	ConfigNamespace, ConfigMap string
	// Revision is the revision meshinject serves. Default: the default.
	Revision string
}

// CheckAll checks every target.
func (c *Checker) CheckAll(ctx context.Context, targets []Target) ([]checkResult, error) {
	mwcs, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list MutatingWebhookConfigurations: %w", err)
	}
	eng, err := c.engine(ctx)
	if err != nil {
		return nil, err
	}
	nsLabels := map[string]map[string]string{}
	var out []checkResult
	for _, t := range targets {
		ns := t.Object.Namespace
		if _, ok := nsLabels[ns]; !ok {
			n, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("namespace %s: %w", ns, err)
			}
			nsLabels[ns] = n.Labels
		}
		ck := check(mwcs.Items, eng, t, nsLabels[ns], cmpOr(c.Revision, "default"))
		for _, w := range eng.Config().Warnings {
			ck.Warnings = append(ck.Warnings, "meshinject's configuration: "+w)
		}
		out = append(out, ck)
	}
	return out, nil
}

// engine builds meshinject's engine from the ConfigMap it serves with.
func (c *Checker) engine(ctx context.Context) (*inject.Engine, error) {
	ns, name := c.ConfigNamespace, c.ConfigMap
	if ns == "" {
		ns = "meshinject"
	}
	if name == "" {
		name = "meshinject-config"
	}
	cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("meshinject's configuration, ConfigMap %s/%s: %w", ns, name, err)
	}
	cfg, err := config.Load(config.Sources{InjectionConfig: []byte(cm.Data["config"]), Values: []byte(cm.Data["values"]),
		Mesh: []byte(cm.Data["mesh"]), Revision: c.Revision})
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", ns, name, err)
	}
	return inject.New(inject.Options{Config: cfg})
}

// check is one target's verdicts.
func check(mwcs []admissionregistrationv1.MutatingWebhookConfiguration, eng *inject.Engine, t Target, nsLabels map[string]string, rev string) checkResult {
	c := checkResult{Object: t.Object}
	injecting, oursCalled := 0, false
	for i := range mwcs {
		m := &mwcs[i]
		if !actsOnPodCreate(m) {
			continue
		}
		w := matchWebhook(m, t.Object.Namespace, nsLabels, t.Pod)
		wc := webhookCheck{Webhook: m.Name, Revision: cmpOr(m.Labels["meshinject.io/rev"], m.Labels["istio.io/rev"]), Injected: w.Sent, Reason: reason(w)}
		if w.Sent {
			injecting++
			oursCalled = oursCalled || m.Labels["meshinject.io/rev"] == rev
		}
		c.Webhooks = append(c.Webhooks, wc)
	}
	slices.SortFunc(c.Webhooks, func(a, b webhookCheck) int { return strings.Compare(a.Webhook, b.Webhook) })
	if injecting > 1 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d webhook configurations would inject this pod; only one should", injecting))
	}
	if t.Existing {
		if st, ok := t.Pod.Annotations[inject.AnnotationStatus]; ok {
			var s inject.Status
			if json.Unmarshal([]byte(st), &s) == nil {
				c.Injected = "revision " + s.Revision
			}
		}
	}
	c.Verdict = verdict(eng, t)
	if !oursCalled {
		if c.Verdict.Result == resultInjected && injecting == 0 {
			c.Hints = notSentHints(t.Pod)
		}
		c.Verdict = decision{Result: resultNotSent, Reason: notSentReason(c.Verdict)}
	}
	return c
}

// verdict is the engine's decision on the target's pod as it was asked
// for: an injected pod is first uninjected.
func verdict(eng *inject.Engine, t Target) decision {
	pod := t.Pod.DeepCopy()
	if err := inject.Uninject(pod); err != nil {
		return decision{Result: resultError, Reason: err.Error()}
	}
	req := inject.Request{Pod: pod, Namespace: t.Object.Namespace, NativeSidecars: true}
	if t.Object.Kind != "Pod" {
		req.Workload = &inject.Workload{TypeMeta: metav1.TypeMeta{APIVersion: t.Object.APIVersion, Kind: t.Object.Kind}, Name: t.Object.Name}
	}
	res, err := eng.Inject(req)
	var ie *inject.Error
	switch {
	case errors.As(err, &ie):
		return decision{Result: resultDenied, Reason: err.Error(), Field: ie.Field, Value: ie.Value}
	case err != nil:
		return decision{Result: resultError, Reason: err.Error()}
	case res.Skipped:
		return decision{Result: resultSkipped, Reason: res.Reason, Kind: res.SkipKind}
	}
	return decision{Result: resultInjected, Reason: "templates " + strings.Join(res.Templates, ", ")}
}

// actsOnPodCreate reports whether a configuration has an entry for pod
// creation.
func actsOnPodCreate(m *admissionregistrationv1.MutatingWebhookConfiguration) bool {
	for _, w := range m.Webhooks {
		for _, r := range w.Rules {
			if slices.Contains(r.Resources, "pods") || slices.Contains(r.Resources, "*") {
				if slices.Contains(r.Operations, admissionregistrationv1.Create) || slices.Contains(r.Operations, admissionregistrationv1.OperationAll) {
					return true
				}
			}
		}
	}
	return false
}

// reason is a configuration's REASON: the entry that matches, or why
// none does, entry by entry.
func reason(w webhook) string {
	var why []string
	for _, e := range w.Entries {
		if e.Matches {
			return e.Name + " matches"
		}
		why = append(why, e.Name+": "+e.Reason)
	}
	return "no entry matches (" + strings.Join(why, "; ") + ")"
}

// WriteChecks writes checks as Istio's check-inject table, then the
// engine's verdict and the warnings, for each target.
func WriteChecks(w io.Writer, checks []checkResult) {
	for i, c := range checks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		o := c.Object
		fmt.Fprintf(w, "%s %s/%s\n", strings.ToLower(o.Kind), o.Namespace, o.Name)
		fmt.Fprintln(w, "WEBHOOK\tREVISION\tINJECTED\tREASON")
		for _, wc := range c.Webhooks {
			mark := "✘"
			if wc.Injected {
				mark = "✔"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", wc.Webhook, cmpOr(wc.Revision, "-"), mark, wc.Reason)
		}
		if c.Injected != "" {
			fmt.Fprintf(w, "pod: injected, %s\n", c.Injected)
		}
		fmt.Fprintf(w, "meshinject: %s", c.Verdict.Result)
		if c.Verdict.Reason != "" {
			fmt.Fprintf(w, ": %s", c.Verdict.Reason)
		}
		fmt.Fprintln(w)
		for _, warn := range c.Warnings {
			fmt.Fprintf(w, "WARNING: %s\n", warn)
		}
		for _, h := range c.Hints {
			fmt.Fprintf(w, "hint: %s\n", h)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
