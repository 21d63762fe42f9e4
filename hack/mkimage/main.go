// Command ociimage builds an OCI image of static binaries on an empty base
// without a container engine (hack/ociimage) and writes it as an OCI
// image layout and its archive:
//
//	ociimage -ref ghcr.io/meshinject/meshinject:0.1.0 \
//	  -platform linux/amd64=out/linux_amd64 -platform linux/arm64=out/linux_arm64 \
//	  -entrypoint /meshinject -label org.opencontainers.image.version=0.1.0 \
//	  -layout out/oci -archive out/meshinject.oci.tar
//
// It prints the index's digest.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshinject/meshinject/hack/ociimage"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run() error {
	var platforms, labels, entrypoint, cmd, env list
	ref := flag.String("ref", "", "the image's reference, recorded in the layout (required)")
	user := flag.String("user", "", "the config's user (default 65532:65532)")
	dir := flag.String("layout", "", "OCI image layout folder to write (required)")
	archive := flag.String("archive", "", "OCI archive (tar of the layout) to write (optional)")
	flag.Var(&platforms, "platform", "os/arch=folder of that platform's files (repeatable)")
	flag.Var(&labels, "label", "key=value label of the config (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "entrypoint element (repeatable)")
	flag.Var(&cmd, "cmd", "default argument (repeatable)")
	flag.Var(&env, "env", "KEY=value of the config's environment (repeatable; default PATH=/)")
	flag.Parse()
	if *ref == "" || *dir == "" || len(platforms) == 0 {
		return fmt.Errorf("-ref, -layout and at least one -platform are required")
	}
	opts := ociimage.Options{Entrypoint: entrypoint, Cmd: cmd, User: *user, Env: env, Labels: map[string]string{}}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("-env %q: want KEY=value", e)
		}
	}
	for _, p := range platforms {
		plat, folder, ok := strings.Cut(p, "=")
		osName, arch, ok2 := strings.Cut(plat, "/")
		if !ok || !ok2 || folder == "" {
			return fmt.Errorf("-platform %q: want os/arch=folder", p)
		}
		opts.Platforms = append(opts.Platforms, ociimage.Platform{OS: osName, Arch: arch, Dir: folder})
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("-label %q: want key=value", l)
		}
		opts.Labels[k] = v
	}
	idx, err := ociimage.Build(opts)
	if err != nil {
		return err
	}
	if err := ociimage.WriteLayout(*dir, idx, *ref); err != nil {
		return fmt.Errorf("write layout %s: %w", *dir, err)
	}
	if *archive != "" {
		if err := ociimage.WriteArchive(*archive, *dir); err != nil {
			return fmt.Errorf("write archive %s: %w", *archive, err)
		}
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
