// Package ociimage builds OCI images of static binaries on an empty base,
// without a container engine: one layer per platform holding the given
// files (plus /etc/passwd and /etc/group naming the nonroot user), a
// config with the entrypoint, user and labels, and an index over the
// platforms, written as an OCI image layout archive that `ctr images
// import` and registries' copy tools read.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonrootUID is the user the images run as, distroless' "nonroot".
const NonrootUID = 65532

// Platform is one platform's content: every regular file under Dir is
// copied to the image's root with its relative path and mode.
type Platform struct {
	// OS and Arch name the platform ("linux", "amd64").
	OS, Arch string
	// Dir holds the platform's files (for example the binary built with
	// GOOS=OS GOARCH=Arch).
	Dir string
}

// Options describe an image.
type Options struct {
	// Platforms of the index, in order; at least one.
	Platforms []Platform
	// Entrypoint of the image's config; Cmd its default arguments (none).
	Entrypoint, Cmd []string
	// User of the config; default "65532:65532" (NonrootUID). Use "0:0"
	// for an image that must run as root.
	User string
	// Labels of the config (org.opencontainers.image.* and others).
	Labels map[string]string
	// Env of the config; default PATH=/ only.
	Env []string
	// Created is the images' creation time; default the Unix epoch, so the
	// same files give the same digests.
	Created time.Time
}

func (o *Options) setDefaults() {
	if o.User == "" {
		o.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	}
	if len(o.Env) == 0 {
		o.Env = []string{"PATH=/"}
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
}

// Build returns the image index of opts' platforms.
func Build(opts Options) (v1.ImageIndex, error) {
	opts.setDefaults()
	if len(opts.Platforms) == 0 {
		return nil, fmt.Errorf("ociimage: no platform")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range opts.Platforms {
		img, err := platformImage(opts, p)
		if err != nil {
			return nil, fmt.Errorf("image for %s/%s: %w", p.OS, p.Arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return idx, nil
}

func platformImage(opts Options, p Platform) (v1.Image, error) {
	layerTar, err := layer(p.Dir, opts.Created)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, History: v1.History{
		Created: v1.Time{Time: opts.Created}, CreatedBy: "ociimage", Comment: "static binaries",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = p.OS, p.Arch, v1.Time{Time: opts.Created}
	cf.Config.Entrypoint, cf.Config.Cmd = opts.Entrypoint, opts.Cmd
	cf.Config.User, cf.Config.Env, cf.Config.Labels = opts.User, opts.Env, opts.Labels
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// passwd and group name root and nonroot, as distroless' static image does,
// so tools that look the user up find it.
var (
	passwd = []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonrootUID, NonrootUID))
	group  = []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonrootUID))
)

// layer returns an uncompressed tar of dir's regular files at the root, in
// name order, owned by root, with their modes and the time created, after
// /etc/passwd, /etc/group and an empty /tmp.
func layer(dir string, created time.Time) ([]byte, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		} else if !d.IsDir() {
			return fmt.Errorf("%s: only regular files and folders go into an image", p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no file", dir)
	}
	sort.Strings(files)
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	dirs := map[string]bool{}
	addDir := func(name string, mode int64) error {
		if dirs[name] || name == "." {
			return nil
		}
		dirs[name] = true
		return w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: created, Format: tar.FormatPAX})
	}
	addFile := func(name string, mode int64, content []byte) error {
		for _, d := range parents(name) {
			if err := addDir(d, 0o755); err != nil {
				return err
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: created, Format: tar.FormatPAX}
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		_, err := w.Write(content)
		return err
	}
	if err := addFile("etc/passwd", 0o644, passwd); err != nil {
		return nil, err
	}
	if err := addFile("etc/group", 0o644, group); err != nil {
		return nil, err
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	for _, f := range files {
		content, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		if err := addFile(f, int64(info.Mode().Perm()), content); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parents returns the folders above name, outermost first.
func parents(name string) []string {
	var out []string
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
