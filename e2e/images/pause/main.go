// Command pause is the node tier's pod sandbox process: it holds the pod's
// namespaces, reaps the zombies that end up with it as their init, and
// exits on SIGINT or SIGTERM, as the sandbox ("pause") image of a
// Kubernetes node does. Built into an image of its own with
// hack/ociimage, it is this project's sandbox image, not the upstream
// one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
