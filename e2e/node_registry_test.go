//go:build node

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/meshinject/meshinject/hack/ociimage"
)

// registryAddr is where the node's registry listens inside the network
// namespace: "localhost", which containerd reaches over plain HTTP, so the
// images named localhost/... resolve there.
const registryAddr = "127.0.0.1:80"

// startRegistry serves the localhost/... images of the images folder from
// an in-memory registry (go-containerregistry's) in the node's network
// namespace, so a pod whose pull policy is Always pulls them as from any
// registry. It runs until the node is torn down.
func (n *node) startRegistry(ctx context.Context, images string) error {
	l, err := n.ns.listen("tcp", registryAddr)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	n.closers = append(n.closers, srv.Close)
	layouts, err := filepath.Glob(filepath.Join(images, "*", "index.json"))
	if err != nil {
		return err
	}
	transport := &http.Transport{DialContext: n.ns.dial}
	pushed := 0
	for _, idxFile := range layouts {
		dir := filepath.Dir(idxFile)
		p, err := layout.FromPath(dir)
		if err != nil {
			return fmt.Errorf("registry: layout %s: %w", dir, err)
		}
		outer, err := p.ImageIndex()
		if err != nil {
			return err
		}
		m, err := outer.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			ref := d.Annotations[ociimage.AnnotationContainerdName]
			if !strings.HasPrefix(ref, "localhost/") {
				continue
			}
			r, err := name.ParseReference(ref, name.Insecure)
			if err != nil {
				return fmt.Errorf("registry: %s: %w", ref, err)
			}
			idx, err := outer.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("registry: %s: %w", ref, err)
			}
			if err := remote.WriteIndex(r, idx, remote.WithContext(ctx), remote.WithTransport(transport)); err != nil {
				return fmt.Errorf("registry: push %s: %w", ref, err)
			}
			pushed++
		}
	}
	if pushed == 0 {
		return errors.New("registry: no localhost/ image in " + images)
	}
	fmt.Fprintf(os.Stderr, "node: registry at localhost serves %d images\n", pushed)
	return nil
}
