//go:build node

package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/meshinject/meshinject/hack/ociimage"
)

// TestImageMatchesDockerfile: the binary in `make image`'s image for this
// machine's platform is byte for byte the binary the Dockerfile's build
// step makes from the same source with the image's version and commit
// (its labels), and both print the same version.
func TestImageMatchesDockerfile(t *testing.T) {
	img := imageForPlatform(t, filepath.Join(nodeTier.images, "meshinject"))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/meshinject" {
		t.Errorf("config: user %q, entrypoint %v; want 65532:65532 and /meshinject", cf.Config.User, cf.Config.Entrypoint)
	}
	version, commit := cf.Config.Labels["org.opencontainers.image.version"], cf.Config.Labels["org.opencontainers.image.revision"]
	if version == "" || commit == "" || cf.Config.Labels["org.opencontainers.image.source"] == "" {
		t.Fatalf("labels %v: want version, revision and source", cf.Config.Labels)
	}
	files := imageFiles(t, img)
	for name := range files {
		if strings.HasPrefix(name, "bin/") || name == "bin/sh" || strings.HasSuffix(name, "/sh") {
			t.Errorf("the image holds %s: no shell wanted", name)
		}
	}
	fromImage := filepath.Join(t.TempDir(), "meshinject-image")
	if err := os.WriteFile(fromImage, files["meshinject"], 0o755); err != nil {
		t.Fatal(err)
	}

	fromDockerfile := filepath.Join(t.TempDir(), "meshinject-dockerfile")
	step := dockerfileBuildStep(t)
	env := append(os.Environ(), "VERSION="+version, "COMMIT="+commit, "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH)
	script := strings.ReplaceAll(step, "/out/meshinject", fromDockerfile)
	cmd := exec.CommandContext(t.Context(), "sh", "-c", script)
	cmd.Dir, cmd.Env = suite.repo, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build step %q: %v\n%s", script, err, out)
	}
	a, b := sum(t, fromImage), sum(t, fromDockerfile)
	if a != b {
		t.Errorf("the image's binary (sha256 %s) differs from the Dockerfile's (sha256 %s)", a, b)
	}
	va, vb := runVersion(t, fromImage), runVersion(t, fromDockerfile)
	if va != vb || !strings.Contains(va, version) || !strings.Contains(va, commit) {
		t.Errorf("version: image %q, Dockerfile %q; want both naming %s and %s", va, vb, version, commit)
	}
}

// dockerfileBuildStep returns the shell command of the Dockerfile's RUN
// step that runs go build, its continuation lines joined.
func dockerfileBuildStep(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(suite.repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if step, ok := strings.CutPrefix(l, "RUN "); ok && strings.Contains(step, "go build") {
			return step
		}
	}
	t.Fatal("no RUN step with go build in the Dockerfile")
	return ""
}

func imageForPlatform(t *testing.T, dir string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("%s: %v (make image)", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil || len(tm.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d entries; want 1", err, len(tm.Manifests))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var archs []string
	var img v1.Image
	for _, d := range m.Manifests {
		archs = append(archs, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(archs, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", archs)
	}
	if img == nil {
		t.Fatalf("no image for linux/%s among %v", runtime.GOARCH, archs)
	}
	return img
}

// imageFiles returns the regular files of img's layers by path.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	entries, err := ociimage.Files(img)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for name, f := range entries {
		if !strings.HasSuffix(name, "/") {
			files[name] = f.Content
		}
	}
	return files
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func runVersion(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}
