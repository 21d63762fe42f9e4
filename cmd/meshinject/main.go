// Command meshinject injects Istio-compatible sidecar and gateway proxies
// into pods: offline into manifests, or as an admission webhook.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshinject/meshinject/cmd/meshinject/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Execute(ctx, os.Args[1:], app.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
