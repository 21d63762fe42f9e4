package webhook

import (
	"context"
	"fmt"
	"strings"
)

type pathParamsKey struct{}

type pathResult struct {
	env map[string]string
	err error
}

// withPathParams parses /inject/<key>/<value>/... into proxy environment
// variables: "cluster" sets ISTIO_META_CLUSTER_ID, "net" sets
// ISTIO_META_NETWORK, any other key becomes its upper-cased name; the value
// "--slash--" stands for "/".
func withPathParams(ctx context.Context, path string) context.Context {
	return context.WithValue(ctx, pathParamsKey{}, parsePathParams(path))
}

func parsePathParams(path string) pathResult {
	rest, ok := strings.CutPrefix(path, "/inject")
	if !ok {
		return pathResult{}
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return pathResult{}
	}
	parts := strings.Split(rest, "/")
	if len(parts)%2 != 0 {
		return pathResult{err: fmt.Errorf("path %q: parameters come in /<key>/<value> pairs", path)}
	}
	env := make(map[string]string, len(parts)/2)
	for i := 0; i < len(parts); i += 2 {
		k, v := parts[i], strings.ReplaceAll(parts[i+1], "--slash--", "/")
		if k == "" {
			return pathResult{err: fmt.Errorf("path %q: empty parameter name", path)}
		}
		switch k {
		case "cluster":
			k = "ISTIO_META_CLUSTER_ID"
		case "net":
			k = "ISTIO_META_NETWORK"
		default:
			k = strings.ToUpper(k)
		}
		env[k] = v
	}
	return pathResult{env: env}
}

// pathParams returns the proxy environment the request path set.
func pathParams(ctx context.Context) (map[string]string, error) {
	r, _ := ctx.Value(pathParamsKey{}).(pathResult)
	return r.env, r.err
}
