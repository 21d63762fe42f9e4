package app

import (
	"bytes"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/cmd/meshinject/app/manifest"
	"github.com/meshinject/meshinject/internal/inject"
)

// injectOptions are the options of meshinject inject.
type injectOptions struct {
	configOptions
	// Filename is a file, a directory or "-" for stdin. Required.
	Filename string
	// Output is the output file. Default: stdout.
	Output string
	// NativeSidecars is auto, true or false. Default auto, which offline
	// means classic sidecars, as istioctl does.
	NativeSidecars string
}

func newInjectCommand(s Streams) *cobra.Command {
	o := &injectOptions{NativeSidecars: "auto"}
	cmd := &cobra.Command{
		Use:     "inject -f FILE|DIR|-",
		Aliases: []string{"kube-inject"},
		Short:   "Inject sidecar or gateway proxies into the workloads of Kubernetes manifests",
		Long: `Inject sidecar or gateway proxies into every workload (Pod, Deployment,
StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) of
the manifests given with -f, offline: no cluster is contacted. Other objects
pass through unchanged. Pods that opt out or use the host network are noted
on stderr and left as they are.`,
		Example: `  meshinject kube-inject -f app.yaml | kubectl apply -f -
  meshinject inject -f k8s/ --set global.hub=registry.example --set global.tag=1.31.4 -o injected.yaml`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return o.Run(s) },
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Filename, "filename", "f", "", "manifest file, directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output file (default: stdout); written only if every input succeeds")
	cmd.Flags().StringVar(&o.NativeSidecars, "native-sidecars", "auto", "native sidecars: auto (offline: off), true or false")
	return cmd
}

func parseNative(v string) (bool, error) {
	switch v {
	case "auto", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf("--native-sidecars %q: want auto, true or false", v)
}

// Run injects the manifests.
func (o *injectOptions) Run(s Streams) error {
	eng, native, err := o.Engine(o.NativeSidecars, s.Err)
	if err != nil {
		return err
	}
	fn := func(obj manifest.Object, pod *corev1.Pod) (bool, error) {
		req := inject.Request{Pod: pod, Namespace: obj.Namespace, NativeSidecars: native, ForcePolicy: true}
		if obj.Kind != "Pod" {
			req.Workload = &inject.Workload{TypeMeta: metav1.TypeMeta{APIVersion: obj.APIVersion, Kind: obj.Kind}, Name: obj.Name}
		}
		res, err := eng.Inject(req)
		if err != nil {
			return false, fmt.Errorf("%s: %w", obj, err)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(s.Err, "meshinject: %s: warning: %s\n", obj, w)
		}
		if res.Skipped {
			fmt.Fprintf(s.Err, "meshinject: %s: not injected: %s\n", obj, res.Reason)
			return false, nil
		}
		return true, nil
	}
	return transformAll(o.Filename, o.Output, s, fn)
}

// transformAll applies fn to every input and writes the joined output.
func transformAll(filename, output string, s Streams, fn manifest.PodFunc) error {
	inputs, err := readInputs(filename, s.In)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for _, in := range inputs {
		b, err := manifest.Transform(in.data, fn)
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		if out.Len() > 0 && len(b) > 0 && b[0] != '{' {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return writeOutput(output, out.Bytes(), s.Out)
}
