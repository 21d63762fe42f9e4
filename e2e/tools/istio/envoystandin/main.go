// Command envoystandin stands in for Envoy when the e2e suite runs
// pilot-agent outside a container: pilot-agent starts it as it would start
// Envoy, and it records what Envoy would be given, then asks the agent's
// SDS server for the workload certificate as Envoy does, and stays up until
// it is told to stop.
//
// It writes into $ENVOY_STANDIN_DIR:
//
//	args            its command line, one argument per line
//	bootstrap.json  the bootstrap file named by -c
//	cert-chain.pem  the workload certificate chain the SDS server sent
//	error           what went wrong, if anything did
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sds "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

func main() {
	dir := os.Getenv("ENVOY_STANDIN_DIR")
	if dir == "" {
		fmt.Fprintln(os.Stderr, "envoystandin: ENVOY_STANDIN_DIR is not set")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, dir, os.Args[1:]); err != nil {
		_ = os.WriteFile(filepath.Join(dir, "error"), []byte(err.Error()+"\n"), 0o644)
		fmt.Fprintln(os.Stderr, "envoystandin:", err)
	}
	<-ctx.Done()
}

func run(ctx context.Context, dir string, args []string) error {
	if err := os.WriteFile(filepath.Join(dir, "args"), []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	bootstrap := ""
	for i, a := range args {
		if a == "-c" && i+1 < len(args) {
			bootstrap = args[i+1]
		}
	}
	if bootstrap == "" {
		return errors.New("no -c bootstrap file on the command line")
	}
	b, err := os.ReadFile(bootstrap)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), b, 0o644); err != nil {
		return err
	}
	var boot struct {
		Node struct {
			ID      string `json:"id"`
			Cluster string `json:"cluster"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &boot); err != nil {
		return fmt.Errorf("bootstrap %s: %w", bootstrap, err)
	}
	chain, err := workloadCertificate(ctx, os.Getenv("ENVOY_STANDIN_SDS"), boot.Node.ID, boot.Node.Cluster)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cert-chain.pem"), chain, 0o644)
}

// workloadCertificate asks the SDS server on the Unix socket for the
// "default" secret, as Envoy does, and returns its certificate chain.
func workloadCertificate(ctx context.Context, socket, node, cluster string) ([]byte, error) {
	if socket == "" {
		socket = "./var/run/secrets/workload-spiffe-uds/socket"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		chain, err := askSDS(ctx, socket, node, cluster)
		if err == nil {
			return chain, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("SDS on %s: %w", socket, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func askSDS(ctx context.Context, socket, node, cluster string) ([]byte, error) {
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := sds.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		return nil, err
	}
	req := &discovery.DiscoveryRequest{
		Node:          &core.Node{Id: node, Cluster: cluster},
		ResourceNames: []string{"default"},
		TypeUrl:       secretType,
	}
	if err := stream.Send(req); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	for _, r := range resp.GetResources() {
		var s tls.Secret
		if err := r.UnmarshalTo(&s); err != nil {
			return nil, err
		}
		if c := s.GetTlsCertificate(); c != nil {
			return c.GetCertificateChain().GetInlineBytes(), nil
		}
	}
	return nil, errors.New("the SDS response has no certificate")
}
