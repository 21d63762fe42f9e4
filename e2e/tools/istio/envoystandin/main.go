// Command envoystandin is a test double for Envoy: pilot-agent starts it as
// it starts Envoy, and it answers what pilot-agent and the kubelet ask of
// Envoy, so that an injected pod runs on the e2e suite's node where no
// Envoy binary can be had. It is not Envoy and runs none of the mesh's data
// path: no mTLS, no routing, no filters, no configuration applied.
//
// What it does, from the bootstrap file named by -c:
//
//   - asks the agent's SDS server (the sds-grpc cluster's socket) for the
//     workload certificate and the root CA, as Envoy does, and logs the
//     certificate's SPIFFE ID;
//   - asks the agent's xDS proxy (the xds-grpc cluster's socket) for
//     clusters and listeners over ADS, acknowledges each response and counts
//     it in the stats pilot-agent's readiness check reads;
//   - serves the admin API's stats, ready, drain and quit endpoints on the
//     bootstrap's admin address, and the bootstrap's static listeners that
//     route to the agent (the kubelet's :15021/healthz/ready) or to the
//     admin API (:15090/stats/prometheus), by forwarding to them;
//   - binds the ports of the virtualOutbound and virtualInbound listeners
//     istiod sends (15001 and 15006) and passes each TCP connection through
//     to its original destination (SO_ORIGINAL_DST, or the local address of
//     a transparent socket under TPROXY), logging one line per connection
//     with its direction and original destination.
//
// Every record is one line on stdout: "envoystandin " and a JSON object
// with a "kind" (args, certificate, xds, listening, capture, error).
//
// Run outside a pod (ENVOY_STANDIN_DIR set) it binds nothing: it records
// its arguments, the bootstrap and the certificate chain the SDS server
// sent into that folder as files (args, bootstrap.json, cert-chain.pem,
// error) and stays up until it is told to stop.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	args := os.Args[1:]
	if dir := os.Getenv("ENVOY_STANDIN_DIR"); dir != "" {
		if err := recordOnly(ctx, dir, args); err != nil {
			_ = os.WriteFile(filepath.Join(dir, "error"), []byte(err.Error()+"\n"), 0o644)
			fmt.Fprintln(os.Stderr, "envoystandin:", err)
		}
		<-ctx.Done()
		return
	}
	if err := serve(ctx, args); err != nil {
		record("error", map[string]any{"error": err.Error()})
		os.Exit(1)
	}
}

var stdout sync.Mutex

// record writes one record line on stdout.
func record(kind string, fields map[string]any) {
	fields["kind"] = kind
	b, err := json.Marshal(fields)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"kind":"error","error":%q}`, err.Error()))
	}
	stdout.Lock()
	defer stdout.Unlock()
	fmt.Fprintf(os.Stdout, "envoystandin %s\n", b)
}

// bootstrapFile returns the file named by -c.
func bootstrapFile(args []string) (string, error) {
	for i, a := range args {
		if a == "-c" && i+1 < len(args) {
			return args[i+1], nil
		}
	}
	return "", fmt.Errorf("no -c bootstrap file on the command line %q", strings.Join(args, " "))
}

// recordOnly is the mode outside a pod: the files of the package comment.
func recordOnly(ctx context.Context, dir string, args []string) error {
	if err := os.WriteFile(filepath.Join(dir, "args"), []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	file, err := bootstrapFile(args)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), b, 0o644); err != nil {
		return err
	}
	boot, err := parseBootstrap(b)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", file, err)
	}
	socket := os.Getenv("ENVOY_STANDIN_SDS")
	if socket == "" {
		socket = boot.pipe("sds-grpc")
	}
	chain, err := fetchSecret(ctx, socket, boot.Node, "default")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cert-chain.pem"), chain, 0o644)
}

// serve is the mode inside a pod: everything of the package comment until
// ctx ends or the admin API is told to quit.
func serve(ctx context.Context, args []string) error {
	file, err := bootstrapFile(args)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	boot, err := parseBootstrap(b)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", file, err)
	}
	record("args", map[string]any{"args": args, "node": boot.Node.GetId()})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &state{}
	errs := make(chan error, 4)
	for _, f := range []func() error{
		func() error { return serveAdmin(ctx, boot, st, cancel) },
		func() error { return serveStatic(ctx, boot) },
		func() error { return certificates(ctx, boot) },
		func() error { return runXDS(ctx, boot, st) },
	} {
		go func() {
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}
