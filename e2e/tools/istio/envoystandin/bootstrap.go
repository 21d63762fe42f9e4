package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// bootstrap is what the stand-in reads of Envoy's bootstrap: the node, the
// admin address, and the static clusters and listeners.
type bootstrap struct {
	Node *core.Node
	// Admin is the admin API's host:port.
	Admin string
	// Clusters maps a static cluster's name to its first endpoint: a
	// host:port, or "unix:" and a socket path.
	Clusters map[string]string
	// Listeners are the static listeners' addresses and the cluster each
	// routes to ("" when none is named).
	Listeners []staticListener
}

type staticListener struct {
	Name, Addr, Cluster string
}

// The parts of the bootstrap JSON read here.
type rawBootstrap struct {
	Node  json.RawMessage `json:"node"`
	Admin struct {
		Address rawAddress `json:"address"`
	} `json:"admin"`
	StaticResources struct {
		Clusters []struct {
			Name           string `json:"name"`
			LoadAssignment struct {
				Endpoints []struct {
					LbEndpoints []struct {
						Endpoint struct {
							Address rawAddress `json:"address"`
						} `json:"endpoint"`
					} `json:"lb_endpoints"`
				} `json:"endpoints"`
			} `json:"load_assignment"`
		} `json:"clusters"`
		Listeners []struct {
			Name    string          `json:"name"`
			Address rawAddress      `json:"address"`
			Chains  json.RawMessage `json:"filter_chains"`
		} `json:"listeners"`
	} `json:"static_resources"`
}

type rawAddress struct {
	Socket *struct {
		Address string `json:"address"`
		Port    uint32 `json:"port_value"`
	} `json:"socket_address"`
	Pipe *struct {
		Path string `json:"path"`
	} `json:"pipe"`
}

func (a rawAddress) String() string {
	switch {
	case a.Socket != nil:
		return net.JoinHostPort(a.Socket.Address, strconv.Itoa(int(a.Socket.Port)))
	case a.Pipe != nil:
		return "unix:" + a.Pipe.Path
	}
	return ""
}

func parseBootstrap(b []byte) (*bootstrap, error) {
	var raw rawBootstrap
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	node := &core.Node{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw.Node, node); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	boot := &bootstrap{Node: node, Admin: raw.Admin.Address.String(), Clusters: map[string]string{}}
	for _, c := range raw.StaticResources.Clusters {
		for _, e := range c.LoadAssignment.Endpoints {
			for _, lb := range e.LbEndpoints {
				if _, ok := boot.Clusters[c.Name]; !ok {
					boot.Clusters[c.Name] = lb.Endpoint.Address.String()
				}
			}
		}
	}
	for _, l := range raw.StaticResources.Listeners {
		var chains any
		_ = json.Unmarshal(l.Chains, &chains)
		boot.Listeners = append(boot.Listeners, staticListener{Name: l.Name, Addr: l.Address.String(), Cluster: routedCluster(chains)})
	}
	if boot.Admin == "" {
		return nil, fmt.Errorf("no admin address")
	}
	return boot, nil
}

// pipe returns the socket path of the named cluster, or "".
func (b *bootstrap) pipe(cluster string) string {
	if a := b.Clusters[cluster]; len(a) > 5 && a[:5] == "unix:" {
		return a[5:]
	}
	return ""
}

// routedCluster finds the first "cluster" a listener's filter chains route
// to.
func routedCluster(v any) string {
	switch v := v.(type) {
	case map[string]any:
		if c, ok := v["cluster"].(string); ok {
			return c
		}
		for _, e := range v {
			if c := routedCluster(e); c != "" {
				return c
			}
		}
	case []any:
		for _, e := range v {
			if c := routedCluster(e); c != "" {
				return c
			}
		}
	}
	return ""
}
