package app

import (
	"bytes"
	"context"
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
	manifestFlags
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
pass through unchanged. Pods that opt out or use the host network, and an
input with no workload, are noted on stderr and left as they are.`,
		Example: `  meshinject kube-inject -f app.yaml | kubectl apply -f -
  meshinject inject -f k8s/ --set global.hub=registry.example --set global.tag=1.31.4 --output-file injected.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.warnDeprecated(cmd, s)
			return o.Run(cmd.Context(), s)
		},
	}
	o.AddFlags(cmd.Flags())
	o.addInput(cmd.Flags())
	o.addOutputFile(cmd.Flags())
	nativeSidecarsFlag(cmd.Flags(), &o.NativeSidecars, "offline: off")
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
func (o *injectOptions) Run(_ context.Context, s Streams) error {
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
	return transformAll(o.Filename, o.OutputFile, s, fn)
}

// noWorkload notes on stderr that input name holds no workload, so
// nothing in it was looked at.
func noWorkload(s Streams, name string) {
	fmt.Fprintf(s.Err, "meshinject: %s: no workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob); passed through unchanged\n", name)
}

// transformAll applies fn to every input and writes the joined output.
func transformAll(filename, output string, s Streams, fn manifest.PodFunc) error {
	inputs, err := readInputs(filename, s.In)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for _, in := range inputs {
		pods := 0
		counted := func(obj manifest.Object, pod *corev1.Pod) (bool, error) {
			pods++
			return fn(obj, pod)
		}
		b, err := manifest.Transform(in.data, counted)
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		if pods == 0 {
			noWorkload(s, in.name)
		}
		if out.Len() > 0 && len(b) > 0 && b[0] != '{' {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return writeOutput(output, out.Bytes(), s.Out)
}
