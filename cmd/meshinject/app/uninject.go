package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
	"github.com/meshinject/meshinject/internal/inject"
)

// uninjectOptions are the options of meshinject uninject.
type uninjectOptions struct {
	manifestFlags
}

func newUninjectCommand(s Streams) *cobra.Command {
	o := &uninjectOptions{}
	cmd := &cobra.Command{
		Use:   "uninject -f FILE|DIR|-",
		Short: "Remove an injection from the workloads of Kubernetes manifests",
		Long: `Remove what injection added to every workload of the manifests given with -f:
the containers, volumes and pull secrets listed in sidecar.istio.io/status,
and the labels, annotations and probe rewrites it made. Workloads that were
not injected pass through unchanged.`,
		Example: `  meshinject uninject -f injected.yaml --output-file app.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.warnDeprecated(cmd, s)
			return o.Run(cmd.Context(), s)
		},
	}
	o.addInput(cmd.Flags())
	o.addOutputFile(cmd.Flags())
	return cmd
}

// Run uninjects the manifests.
func (o *uninjectOptions) Run(_ context.Context, s Streams) error {
	fn := func(obj manifest.Object, pod *corev1.Pod) (bool, error) {
		if _, ok := pod.Annotations[inject.AnnotationStatus]; !ok {
			fmt.Fprintf(s.Err, "meshinject: %s: not injected; left unchanged\n", obj)
			return false, nil
		}
		if err := inject.Uninject(pod); err != nil {
			return false, fmt.Errorf("%s: %w", obj, err)
		}
		return true, nil
	}
	return transformAll(o.Filename, o.OutputFile, s, fn)
}
