package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/cmd/meshinject/app/tags"
)

// tagOptions are the options of meshinject tag's commands.
type tagOptions struct {
	cluster
	// Revision is the revision set and generate point the tag at.
	Revision string
	// Overwrite lets set move a tag from another revision.
	Overwrite bool
	// SkipConfirmation lets remove delete a tag namespaces still use.
	SkipConfirmation bool
	// Output is "text" (default) or "json" for list.
	Output string
	// ConfigNamespace is where a revision's configuration ConfigMap is
	// when its webhook has a URL instead of a Service. Default: meshinject.
	ConfigNamespace string
}

func newTagCommand(s Streams) *cobra.Command {
	o := &tagOptions{Output: "text"}
	cmd := &cobra.Command{
		Use:   "tag",
		Short: "Point revision tags (default, prod-stable, ...) at meshinject revisions, as istioctl tag does",
		Long: `A revision tag is a MutatingWebhookConfiguration (meshinject-revision-tag-<tag>)
that sends the pods selecting the tag (namespace or pod label
istio.io/rev=<tag>) to a revision's injector. Moving the tag moves its
namespaces to another revision without relabelling them; their pods change
when restarted. The tag default also takes istio-injection=enabled
namespaces and sidecar.istio.io/inject=true pods.`,
	}
	f := cmd.PersistentFlags()
	o.flags(f)
	f.StringVar(&o.ConfigNamespace, "config-namespace", "meshinject", "namespace of a revision's configuration ConfigMap when its webhook has a URL")
	cmd.AddCommand(o.setCommand(s), o.generateCommand(s), o.removeCommand(s), o.listCommand(s))
	return cmd
}

func (o *tagOptions) setCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "set TAG --revision REVISION",
		Short:   "Create a tag, or move it to another revision (--overwrite)",
		Example: "  meshinject tag set prod-stable --revision 1-31\n  meshinject tag set default --revision 1-32 --overwrite",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := o.manager()
			if err != nil {
				return err
			}
			mwc, err := m.Set(cmd.Context(), args[0], tags.SetOptions{Revision: o.Revision, Overwrite: o.Overwrite})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.Out, "tag %s points to revision %s (MutatingWebhookConfiguration %s); restart workloads to move their pods\n",
				args[0], mwc.Labels[tags.LabelRevision], mwc.Name)
			return err
		},
	}
	cmd.Flags().StringVarP(&o.Revision, "revision", "r", "", "revision the tag points to (required)")
	cmd.Flags().BoolVar(&o.Overwrite, "overwrite", false, "move the tag if it points to another revision")
	_ = cmd.MarkFlagRequired("revision")
	return cmd
}

func (o *tagOptions) generateCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate TAG --revision REVISION",
		Short: "Print the tag's MutatingWebhookConfiguration instead of applying it (for GitOps)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.generate(cmd.Context(), s.Out, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.Revision, "revision", "r", "", "revision the tag points to (required)")
	_ = cmd.MarkFlagRequired("revision")
	return cmd
}

func (o *tagOptions) generate(ctx context.Context, w io.Writer, tag string) error {
	m, err := o.manager()
	if err != nil {
		return err
	}
	mwc, err := m.Generate(ctx, tag, o.Revision)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(mwc)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (o *tagOptions) removeCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove TAG",
		Short: "Delete a tag; refused while namespaces still select it, unless --skip-confirmation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := o.manager()
			if err != nil {
				return err
			}
			if err := m.Remove(cmd.Context(), args[0], o.SkipConfirmation); err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.Out, "tag %s removed\n", args[0])
			return err
		},
	}
	cmd.Flags().BoolVarP(&o.SkipConfirmation, "skip-confirmation", "y", false, "remove the tag even if namespaces still select it")
	return cmd
}

func (o *tagOptions) listCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tags with their revision, namespaces and the pods a restart would change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Output != "text" && o.Output != "json" {
				return fmt.Errorf("-o %q: want text or json", o.Output)
			}
			m, err := o.manager()
			if err != nil {
				return err
			}
			list, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if o.Output == "json" {
				enc := json.NewEncoder(s.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"items": list})
			}
			return writeTags(s.Out, list)
		},
	}
	formatFlag(cmd.Flags(), &o.Output, "")
	return cmd
}

// writeTags prints istioctl's TAG, REVISION, NAMESPACES table with the
// pod counts, then each stale pod and why.
func writeTags(w io.Writer, list []tags.Tag) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no revision tags")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TAG\tREVISION\tNAMESPACES\tPODS\tSTALE")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", t.Tag, t.Revision, cmp.Or(strings.Join(t.Namespaces, ","), "-"), t.Pods, len(t.Stale))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range list {
		if t.Note != "" {
			fmt.Fprintf(w, "\ntag %s: %s\n", t.Tag, t.Note)
		}
		if len(t.Stale) == 0 {
			continue
		}
		pods := "pods need"
		if len(t.Stale) == 1 {
			pods = "pod needs"
		}
		fmt.Fprintf(w, "\ntag %s: %d %s a restart to run revision %s as configured now:\n", t.Tag, len(t.Stale), pods, t.Revision)
		for _, p := range t.Stale {
			fmt.Fprintf(w, "  %s/%s: %s\n", p.Namespace, p.Name, p.Reason)
		}
	}
	return nil
}

// manager is a tags.Manager on the selected cluster.
func (o *tagOptions) manager() (*tags.Manager, error) {
	client, _, err := o.client()
	if err != nil {
		return nil, err
	}
	return &tags.Manager{Client: client, ConfigNamespace: o.ConfigNamespace}, nil
}
