// Package app implements the meshinject command line: the cobra command
// tree and its options. cmd/meshinject only wires it to the process.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Streams are the process's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// newRootCommand returns the meshinject command tree.
func newRootCommand(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "meshinject",
		Short:         "Inject Istio-compatible sidecar and gateway proxies into pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.AddCommand(newInjectCommand(s), newUninjectCommand(s), newExplainCommand(s), newCheckInjectCommand(s), newTagCommand(s), newServeCommand(s), newVersionCommand(s))
	return root
}

// Execute runs the command line args and returns the process exit code:
// 0 on success, 1 on any error (printed to s.Err).
func Execute(ctx context.Context, args []string, s Streams) int {
	root := newRootCommand(s) //nolint:contextcheck // ctx reaches the commands through ExecuteContext below
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(s.Err, "Error: %v\n", err)
		}
		return 1
	}
	return 0
}

// errReported marks an error already printed to the user.
var errReported = errors.New("reported")
