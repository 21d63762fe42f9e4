package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshinject/meshinject/cmd/meshinject/app/explain"
)

// checkInjectOptions are the options of meshinject check-inject.
type checkInjectOptions struct {
	cluster
	// Namespace is the namespace of the pod or workload. Default: the
	// context's, else default.
	Namespace string
	// Selector checks the pods with these labels (k=v,...), or, when none
	// exists, a pod that would have them.
	Selector string
	// Output is "text" (default) or "json".
	Output string
	// ConfigNamespace and ConfigMap hold meshinject's configuration.
	ConfigNamespace, ConfigMap string
	// Revision is the revision meshinject serves. Default: the default.
	Revision string
}

func newCheckInjectCommand(s Streams) *cobra.Command {
	o := &checkInjectOptions{Output: "text"}
	cmd := &cobra.Command{
		Use:   "check-inject [POD | deployment/NAME | statefulset/NAME | daemonset/NAME | -l k=v,...]",
		Short: "Say which injectors' webhooks would be called for a pod in the cluster, and meshinject's verdict",
		Long: `Read the namespace's labels, every MutatingWebhookConfiguration that acts on
pod creation (meshinject's and any other injector's, such as istiod's) and
meshinject's configuration from the cluster, and print, as istioctl
x check-inject does, WEBHOOK, REVISION, INJECTED and REASON for each,
then meshinject's verdict on the pod: injected with which templates, or
why not. It warns when two injectors would both inject.`,
		Example: `  meshinject check-inject -n shop web-7d9c
  meshinject check-inject -n shop deployment/reviews
  meshinject check-inject -n shop -l app=web`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.Run(cmd.Context(), s, args) },
	}
	f := cmd.Flags()
	o.flags(f)
	f.StringVarP(&o.Namespace, "namespace", "n", "", "namespace (default: the context's, else default)")
	f.StringVarP(&o.Selector, "labels", "l", "", "check the pods with these labels, k=v,... (or a pod that would have them)")
	formatFlag(f, &o.Output, "")
	f.StringVar(&o.ConfigNamespace, "config-namespace", "meshinject", "namespace of meshinject's configuration ConfigMap")
	f.StringVar(&o.ConfigMap, "config-map", "meshinject-config", "meshinject's configuration ConfigMap")
	f.StringVarP(&o.Revision, "revision", "r", "", "revision meshinject serves (default: the default revision)")
	return cmd
}

// Run checks the target.
func (o *checkInjectOptions) Run(ctx context.Context, s Streams, args []string) error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("-o %q: want text or json", o.Output)
	}
	if (len(args) == 0) == (o.Selector == "") {
		return fmt.Errorf("name one pod or workload, or give -l labels")
	}
	client, ns, err := o.client()
	if err != nil {
		return err
	}
	targets, err := o.targets(ctx, client, ns, args)
	if err != nil {
		return err
	}
	c := &explain.Checker{Client: client, ConfigNamespace: o.ConfigNamespace, ConfigMap: o.ConfigMap, Revision: o.Revision}
	checks, err := c.CheckAll(ctx, targets)
	if err != nil {
		return err
	}
	if o.Output == "json" {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"items": checks})
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	explain.WriteChecks(tw, checks)
	return tw.Flush()
}

// client is the cluster's client and the namespace to use.
func (o *checkInjectOptions) client() (kubernetes.Interface, string, error) {
	client, ns, err := o.cluster.client()
	if o.Namespace != "" {
		ns = o.Namespace
	}
	return client, ns, err
}

// targets are the pods or pod templates to check.
func (o *checkInjectOptions) targets(ctx context.Context, client kubernetes.Interface, ns string, args []string) ([]explain.Target, error) {
	if o.Selector != "" {
		return selectorTargets(ctx, client, ns, o.Selector)
	}
	kind, name, ok := strings.Cut(args[0], "/")
	if !ok {
		kind, name = "pod", args[0]
	}
	var tmpl *corev1.PodTemplateSpec
	obj := explain.Object{APIVersion: "apps/v1", Namespace: ns, Name: name}
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return []explain.Target{{Object: explain.Object{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}, Pod: pod, Existing: true}}, nil
	case "deployment", "deployments", "deploy":
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		obj.Kind, tmpl = "Deployment", &d.Spec.Template
	case "statefulset", "statefulsets", "sts":
		d, err := client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		obj.Kind, tmpl = "StatefulSet", &d.Spec.Template
	case "daemonset", "daemonsets", "ds":
		d, err := client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		obj.Kind, tmpl = "DaemonSet", &d.Spec.Template
	default:
		return nil, fmt.Errorf("%s: want a pod, deployment/NAME, statefulset/NAME or daemonset/NAME", args[0])
	}
	return []explain.Target{{Object: obj, Pod: &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}}}, nil
}

// selectorTargets are the pods with the labels, or one that would have
// them when there is none.
func selectorTargets(ctx context.Context, client kubernetes.Interface, ns, selector string) ([]explain.Target, error) {
	labels, err := parseLabels(selector)
	if err != nil {
		return nil, fmt.Errorf("-l: %w", err)
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []explain.Target
	for i := range pods.Items {
		p := &pods.Items[i]
		out = append(out, explain.Target{Object: explain.Object{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: p.Name}, Pod: p, Existing: true})
	}
	if len(out) == 0 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels}}
		out = append(out, explain.Target{Object: explain.Object{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: "(labels " + selector + ")"}, Pod: pod})
	}
	return out, nil
}
