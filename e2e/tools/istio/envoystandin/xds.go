package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sds "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	secretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

// certInfo is a certificate the SDS server sent, as /certs reports it.
type certInfo struct {
	Secret   string    `json:"secret"`
	Subject  string    `json:"subject"`
	URIs     []string  `json:"uris"`
	NotAfter time.Time `json:"not_after"`
}

// dialAgent returns a gRPC client of one of the agent's Unix sockets (SDS
// or the xDS proxy), which speak plain gRPC as Envoy's bootstrap says.
func dialAgent(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// retry calls f every half second until it succeeds or two minutes pass.
func retry(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// certificates asks the agent's SDS server for the workload certificate
// and the root CA and records each.
func certificates(ctx context.Context, boot *bootstrap) error {
	socket := boot.pipe("sds-grpc")
	if socket == "" {
		return errors.New("the bootstrap has no sds-grpc socket")
	}
	for _, name := range []string{"default", "ROOTCA"} {
		chain, err := fetchSecret(ctx, socket, boot.Node, name)
		if err != nil {
			return err
		}
		block, _ := pem.Decode(chain)
		if block == nil {
			return fmt.Errorf("SDS secret %s: no PEM certificate", name)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("SDS secret %s: %w", name, err)
		}
		info := certInfo{Secret: name, Subject: c.Subject.String(), NotAfter: c.NotAfter}
		for _, u := range c.URIs {
			info.URIs = append(info.URIs, u.String())
		}
		record("certificate", map[string]any{"secret": name, "uris": info.URIs, "subject": info.Subject, "not_after": info.NotAfter})
	}
	return nil
}

// fetchSecret asks the SDS server on the Unix socket for the named secret,
// as Envoy does, and returns its certificate chain (or, for a validation
// context, its trusted CA).
func fetchSecret(ctx context.Context, socket string, node *core.Node, name string) ([]byte, error) {
	var out []byte
	err := retry(ctx, "SDS "+name+" on "+socket, func(ctx context.Context) error {
		conn, err := dialAgent(socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		stream, err := sds.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, ResourceNames: []string{name}, TypeUrl: secretType}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, r := range resp.GetResources() {
			var s tls.Secret
			if err := r.UnmarshalTo(&s); err != nil {
				return err
			}
			if c := s.GetTlsCertificate(); c != nil {
				out = c.GetCertificateChain().GetInlineBytes()
				return nil
			}
			if v := s.GetValidationContext(); v != nil {
				out = v.GetTrustedCa().GetInlineBytes()
				return nil
			}
		}
		return errors.New("the SDS response has no certificate")
	})
	return out, err
}

// runXDS asks the agent's xDS proxy for clusters and listeners over one
// ADS stream (reconnecting while it is not there), acknowledges and counts
// each response, and binds the capture listeners of the first listener
// response.
func runXDS(ctx context.Context, boot *bootstrap, st *state) error {
	socket := boot.pipe("xds-grpc")
	if socket == "" {
		return errors.New("the bootstrap has no xds-grpc socket")
	}
	started := false
	for ctx.Err() == nil {
		err := adsStream(ctx, socket, boot.Node, func(typ string, lds []*listener.Listener) error {
			if typ == clusterType {
				st.cdsSuccess.Add(1)
				return nil
			}
			st.ldsSuccess.Add(1)
			if !started {
				started = true
				if err := startCapture(ctx, lds, st); err != nil {
					return err
				}
				st.live.Store(true)
			}
			return nil
		})
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if err != nil && ctx.Err() == nil {
			record("xds", map[string]any{"error": err.Error()})
			time.Sleep(time.Second)
		}
	}
	return nil
}

type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// adsStream runs one ADS stream until it fails; each response is handed to
// got (listeners decoded) and then acknowledged.
func adsStream(ctx context.Context, socket string, node *core.Node, got func(string, []*listener.Listener) error) error {
	conn, err := dialAgent(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for i, typ := range []string{clusterType, listenerType} {
		req := &discovery.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		var lds []*listener.Listener
		if resp.GetTypeUrl() == listenerType {
			for _, r := range resp.GetResources() {
				l := &listener.Listener{}
				if err := r.UnmarshalTo(l); err != nil {
					return fmt.Errorf("listener: %w", err)
				}
				lds = append(lds, l)
			}
		}
		rec := map[string]any{"type": resp.GetTypeUrl(), "version": resp.GetVersionInfo(), "resources": strconv.Itoa(len(resp.GetResources()))}
		if lds != nil {
			names := make([]string, 0, len(lds))
			for _, l := range lds {
				names = append(names, l.GetName())
			}
			rec["listeners"] = names
		}
		record("xds", rec)
		if err := got(resp.GetTypeUrl(), lds); err != nil {
			return &fatalError{err}
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}
