package ociimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// platformDir writes a fake binary for arch into a folder of its own.
func platformDir(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte("binary for "+arch), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testOptions(t *testing.T) Options {
	return Options{
		Platforms:  []Platform{{OS: "linux", Arch: "amd64", Dir: platformDir(t, "amd64")}, {OS: "linux", Arch: "arm64", Dir: platformDir(t, "arm64")}},
		Entrypoint: []string{"/app"},
		Labels:     map[string]string{"org.opencontainers.image.version": "1.2.3"},
	}
}

// TestBuild checks the index and each platform's image: the platforms in
// order, the config (entrypoint, nonroot user, labels, platform), and the
// one layer's files: passwd and group naming nonroot, /tmp, and the
// platform's binary with its exec bits; no shell.
func TestBuild(t *testing.T) {
	idx, err := Build(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 || m.Manifests[0].Platform.Architecture != "amd64" || m.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index manifests %+v, want amd64 then arm64", m.Manifests)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" || cf.Config.User != "65532:65532" ||
			!slices.Equal(cf.Config.Entrypoint, []string{"/app"}) || cf.Config.Labels["org.opencontainers.image.version"] != "1.2.3" {
			t.Errorf("%s: config %+v", d.Platform.Architecture, cf.Config)
		}
		files := layerFiles(t, img)
		want := map[string]int64{"etc/": 0o755, "etc/passwd": 0o644, "etc/group": 0o644, "tmp/": 0o1777, "app": 0o755}
		if len(files) != len(want) {
			t.Errorf("%s: layer holds %v, want %v", d.Platform.Architecture, files, want)
		}
		for name, mode := range want {
			if got, ok := files[name]; !ok || got.Mode != mode {
				t.Errorf("%s: %s mode %o (present %t), want %o", d.Platform.Architecture, name, got.Mode, ok, mode)
			}
		}
		if got := string(files["app"].Content); got != "binary for "+d.Platform.Architecture {
			t.Errorf("%s: /app holds %q", d.Platform.Architecture, got)
		}
		if got := string(files["etc/passwd"].Content); !slices.Contains(strings.Split(got, "\n"), "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin") {
			t.Errorf("/etc/passwd = %q", got)
		}
	}
}

// TestBuildReproducible: the same files give the same index digest.
func TestBuildReproducible(t *testing.T) {
	opts := testOptions(t)
	a, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("digests %s and %s of one input", da, db)
	}
}

// TestBuildRefuses: no platform, an empty folder, a symlink.
func TestBuildRefuses(t *testing.T) {
	if _, err := Build(Options{}); err == nil {
		t.Error("no platform: no error")
	}
	if _, err := Build(Options{Platforms: []Platform{{OS: "linux", Arch: "amd64", Dir: t.TempDir()}}}); err == nil {
		t.Error("empty folder: no error")
	}
	dir := platformDir(t, "amd64")
	if err := os.Symlink("app", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Options{Platforms: []Platform{{OS: "linux", Arch: "amd64", Dir: dir}}}); err == nil {
		t.Error("symlink: no error")
	}
}

// TestWriteLayoutAndArchive: the layout's index.json names the image for
// containerd and by tag, and the archive holds the layout's files.
func TestWriteLayoutAndArchive(t *testing.T) {
	idx, err := Build(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, idx, "ghcr.io/meshinject/meshinject:1.2.3"); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != want ||
		m.Manifests[0].Annotations[AnnotationContainerdName] != "ghcr.io/meshinject/meshinject:1.2.3" ||
		m.Manifests[0].Annotations[AnnotationRefName] != "1.2.3" {
		t.Fatalf("index.json %+v, want the index %s named ghcr.io/meshinject/meshinject:1.2.3", m.Manifests, want)
	}
	docker := filepath.Join(t.TempDir(), "docker")
	if err := WriteLayout(docker, idx, "docker.io/library/app:1"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(docker, "index.json")); err != nil || !strings.Contains(string(b), `"io.containerd.image.name": "docker.io/library/app:1"`) {
		t.Errorf("index.json %s (%v): want the name docker.io/library/app:1 as given", b, err)
	}
	if err := WriteLayout(dir, idx, "not a reference"); err == nil {
		t.Error("a bad reference: no error")
	}
	archive := filepath.Join(t.TempDir(), "image.oci.tar")
	if err := WriteArchive(archive, dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "index.json" {
			var got v1.IndexManifest
			if err := json.NewDecoder(tr).Decode(&got); err != nil || len(got.Manifests) != 1 {
				t.Errorf("archive's index.json: %v %+v", err, got)
			}
		}
	}
	// The index, two manifests, two configs, two layers.
	if !slices.Contains(names, "oci-layout") || !slices.Contains(names, "index.json") || len(names) != 2+7 {
		t.Errorf("archive entries %v", names)
	}
}

func layerFiles(t *testing.T, img v1.Image) map[string]File {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v; want 1", len(layers), err)
	}
	files, err := Files(img)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range files {
		if f.UID != 0 || f.GID != 0 {
			t.Errorf("%s owned by %d:%d", name, f.UID, f.GID)
		}
	}
	return files
}
