// Package httpbin pins go-httpbin, the httpbin of examples/httpbin.yaml
// (docker.io/mccutchen/go-httpbin:v2.15.0), which the node tier builds
// from the Go module proxy into an image of that name.
package httpbin
