package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/cmd/meshinject/app/explain"
	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
)

// explainOptions are the options of meshinject explain.
type explainOptions struct {
	configOptions
	manifestFlags
	cluster
	// NamespaceLabels are the labels of the objects' namespace, k=v,...
	NamespaceLabels string
	// Output is "text" (default) or "json".
	Output string
	// NativeSidecars is auto, true or false. Default auto (offline: off).
	NativeSidecars string
}

func newExplainCommand(s Streams) *cobra.Command {
	o := &explainOptions{Output: "text", NativeSidecars: "auto"}
	cmd := &cobra.Command{
		Use:   "explain -f FILE|DIR|-",
		Short: "Say whether and why each pod or workload would be injected, with the diff",
		Long: `For each pod or workload of the manifests, say which entry of meshinject's
webhook configuration (as deploy/ installs it) the API server would call,
given the namespace's labels (--namespace-labels) and the pod's; the
engine's decision and its reason; the templates and where they came from;
the annotations that change the output; and the diff of the pod. Offline
(no cluster is contacted) unless --kubeconfig or --context is given: then
the namespaces' labels and meshinject's webhook configuration are read from
that cluster.`,
		Example: `  meshinject explain -f app.yaml --namespace-labels istio-injection=enabled
  meshinject explain -f deploy.yaml -o json | jq '.items[].decision'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.Run(cmd.Context(), s) },
	}
	f := cmd.Flags()
	o.AddFlags(f)
	o.addInput(f)
	f.StringVar(&o.NamespaceLabels, "namespace-labels", "", "labels of the objects' namespace, k=v,... (kubernetes.io/metadata.name is added)")
	formatFlag(f, &o.Output, " (the schema is in the README)")
	nativeSidecarsFlag(f, &o.NativeSidecars, "offline: off")
	kubeconfigFlag(f, &o.Kubeconfig, "offline, unless --context is given")
	contextFlag(f, &o.Context)
	return cmd
}

// Run explains the manifests.
func (o *explainOptions) Run(ctx context.Context, s Streams) error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("-o %q: want text or json", o.Output)
	}
	nsLabels, err := parseLabels(o.NamespaceLabels)
	if err != nil {
		return err
	}
	eng, native, err := o.Engine(o.NativeSidecars, s.Err)
	if err != nil {
		return err
	}
	mwc, err := explain.Webhooks(eng.Config().RevisionName())
	if err != nil {
		return err
	}
	labelsOf := func(string) (map[string]string, error) { return nsLabels, nil }
	if o.Kubeconfig != "" || o.Context != "" {
		if mwc, labelsOf, err = o.live(ctx, mwc.Name); err != nil {
			return err
		}
	}
	inputs, err := readInputs(o.Filename, s.In)
	if err != nil {
		return err
	}
	var reports []explain.Report
	fn := func(obj manifest.Object, pod *corev1.Pod) (bool, error) {
		ref := explain.Object{APIVersion: obj.APIVersion, Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name}
		if ref.Namespace == "" {
			ref.Namespace = "default"
		}
		labels, err := labelsOf(ref.Namespace)
		if err != nil {
			return false, err
		}
		r, err := explain.Explain(eng, mwc, ref, pod, explain.Options{NamespaceLabels: labels, NativeSidecars: native})
		if err != nil {
			return false, fmt.Errorf("%s: %w", obj, err)
		}
		reports = append(reports, r)
		return false, nil
	}
	for _, in := range inputs {
		before := len(reports)
		if _, err := manifest.Transform(in.data, fn); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		if len(reports) == before {
			noWorkload(s, in.name)
		}
	}
	return writeReports(s, reports, o.Output)
}

// live reads meshinject's webhook configuration (name) from the cluster,
// and returns it with a reader of namespaces' labels there.
func (o *explainOptions) live(ctx context.Context, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, func(string) (map[string]string, error), error) {
	client, _, err := o.client()
	if err != nil {
		return nil, nil, err
	}
	mwc, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("meshinject's webhook configuration %s: %w", name, err)
	}
	cache := map[string]map[string]string{}
	return mwc, func(ns string) (map[string]string, error) {
		if l, ok := cache[ns]; ok {
			return l, nil
		}
		n, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		cache[ns] = n.Labels
		return n.Labels, nil
	}, nil
}

// writeReports writes the reports as text or as {"items": [...]}.
func writeReports(s Streams, reports []explain.Report, output string) error {
	if output == "json" {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if reports == nil {
			reports = []explain.Report{}
		}
		return enc.Encode(map[string]any{"items": reports})
	}
	f, isFile := s.Out.(*os.File)
	colour := false
	if isFile {
		if st, err := f.Stat(); err == nil {
			colour = st.Mode()&os.ModeCharDevice != 0
		}
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(s.Out)
		}
		explain.WriteText(s.Out, r, colour)
	}
	return nil
}

// parseLabels reads k=v,... into a map.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--namespace-labels %q: want k=v pairs separated by commas", s)
		}
		out[k] = v
	}
	return out, nil
}
