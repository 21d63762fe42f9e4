// Command meshinject injects Istio-compatible sidecar and gateway proxies
// into pods: offline into manifests, or as an admission webhook.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshinject/meshinject/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
