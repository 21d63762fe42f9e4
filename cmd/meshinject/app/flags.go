package app

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// manifestFlags are the input and output of the commands that read
// manifests (inject, uninject, explain).
type manifestFlags struct {
	// Filename is a file, a directory or "-" for stdin. Required.
	Filename string
	// OutputFile is where inject and uninject write. Default: stdout.
	OutputFile string
}

// addInput declares -f/--filename.
func (m *manifestFlags) addInput(f *pflag.FlagSet) {
	f.StringVarP(&m.Filename, "filename", "f", "", "manifest file, directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
}

// addOutputFile declares --output-file and, deprecated, -o/--output with
// the same meaning: -o selects an output format elsewhere (explain,
// check-inject, tag list), as in kubectl.
func (m *manifestFlags) addOutputFile(f *pflag.FlagSet) {
	f.StringVar(&m.OutputFile, "output-file", "", "output file (default: stdout); written only if every input succeeds")
	f.StringVarP(&m.OutputFile, "output", "o", "", "deprecated: use --output-file (-o will select an output format, as for explain and check-inject)")
}

// warnDeprecated notes on stderr that -o/--output named the output file.
func (m *manifestFlags) warnDeprecated(cmd *cobra.Command, s Streams) {
	if cmd.Flags().Changed("output") {
		fmt.Fprintln(s.Err, "meshinject: warning: -o/--output FILE is deprecated: use --output-file FILE (-o will select an output format, as for explain and check-inject)")
	}
}

// formatFlag declares -o/--output, the output format: text (default) or
// json; more says where json's schema is, if anywhere.
func formatFlag(f *pflag.FlagSet, p *string, more string) {
	f.StringVarP(p, "output", "o", "text", "output format: text, or json"+more)
}

// noArgs refuses positional arguments, pointing at -f: a manifest is
// named with -f, as for kubectl apply.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return fmt.Errorf("%s takes no arguments: name manifests with -f, e.g. meshinject %s -f %s", cmd.Name(), cmd.Name(), strings.Join(args, " "))
}

// nativeSidecarsFlag declares --native-sidecars; auto says what auto means
// for the command.
func nativeSidecarsFlag(f *pflag.FlagSet, p *string, auto string) {
	f.StringVar(p, "native-sidecars", "auto", "native sidecars: auto ("+auto+"), true or false")
}

// kubeconfigFlag declares --kubeconfig; def says what no value means.
func kubeconfigFlag(f *pflag.FlagSet, p *string, def string) {
	f.StringVar(p, "kubeconfig", "", "kubeconfig file (default: "+def+")")
}

// contextFlag declares --context.
func contextFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "context", "", "kubeconfig context (default: the current one)")
}
