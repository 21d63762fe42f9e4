//go:build node

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// containerdSock is containerd's socket, on the mount namespace's /run.
const containerdSock = "/run/containerd/containerd.sock"

// pauseImage is the sandbox image: this project's pause (e2e/images/pause),
// built and imported by the suite.
const pauseImage = "localhost/meshinject-e2e/pause:1"

// containerdConfig is containerd's configuration: its root and state on
// the mount namespace's tmpfs, runc with cgroupfs, the CNI bridge of
// cniConfig. restrict_oom_score_adj keeps the runtime from lowering a
// container's OOM score below its own, which takes CAP_SYS_RESOURCE that
// the suite's processes lack: without it no sandbox starts.
const containerdConfig = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "` + containerdSock + `"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "` + pauseImage + `"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "%s"
    conf_dir = "%s"
`

// cniConfig puts pods on a bridge whose gateway is the node; nothing is
// masqueraded, as nothing leaves the namespace. chained is the JSON of
// plugins chained after the bridge (each with a leading comma), or "".
func cniConfig(chained string) string {
	return `{
  "cniVersion": "1.0.0",
  "name": "meshinject-node",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "isDefaultGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "` + podCIDR + `"}]]}
  }` + chained + `]
}
`
}

// cniNamespacePrefix names the namespaces whose pods get Istio's capture
// rules from the node's CNI chain (cnistandin, a stand-in for Istio's CNI
// plugin).
const cniNamespacePrefix = "mesh-cni-rules-"

// cniPlugins fills binDir with Debian's CNI plugins (links to
// /usr/lib/cni) and, where Istio's binaries are at hand (E2E_ISTIO),
// cnistandin built from e2e/cnistandin; it returns the chained plugins'
// JSON for cniConfig.
func cniPlugins(ctx context.Context, binDir string) (string, error) {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	debian, err := os.ReadDir("/usr/lib/cni")
	if err != nil {
		return "", err
	}
	for _, e := range debian {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", e.Name()), filepath.Join(binDir, e.Name())); err != nil {
			return "", err
		}
	}
	istio := os.Getenv("E2E_ISTIO")
	if istio == "" {
		return "", nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, "cnistandin"), "./cnistandin")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cnistandin: %w\n%s", err, out)
	}
	return fmt.Sprintf(`, {"type": "cnistandin", "pilotAgent": %q, "namespacePrefix": %q}`, filepath.Join(istio, "pilot-agent"), cniNamespacePrefix), nil
}

// kubeletConfig: cgroup v1 allowed (failCgroupV1), the cgroup root under
// the test's own cgroup, volume plugins in the suite's folder, the API
// server's calls to the kubelet allowed (the namespace is the suite's).
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://` + containerdSock + `
address: ` + nodeIP + `
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
clusterDNS: [` + clusterDNS + `]
resolvConf: %s
volumePluginDir: %s
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
`

// kubeProxyConfig: iptables mode; every Service connection masqueraded,
// so replies between pods on the bridge pass the node's conntrack without
// bridge netfilter; conntrack settings left alone (they are the
// machine's, not the namespace's).
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: ` + nodeName + `
clusterCIDR: ` + podCIDR + `
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// startRuntime starts containerd, imports the images (one archive per
// ctr call), then starts kubelet and kube-proxy.
func (n *node) startRuntime(ctx context.Context, images []string) error {
	dir := filepath.Join(n.work, "node")
	for _, d := range []string{"cni", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	chained, err := cniPlugins(ctx, filepath.Join(dir, "cni-bin"))
	if err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":            fmt.Sprintf(containerdConfig, filepath.Join(dir, "cni-bin"), filepath.Join(dir, "cni")),
		"cni/10-meshinject.conflist": cniConfig(chained),
		"kubelet.yaml":               fmt.Sprintf(kubeletConfig, n.cgroupRoot, filepath.Join(n.work, "etc", "resolv.conf"), filepath.Join(dir, "volume-plugins")),
		"kube-proxy.yaml":            fmt.Sprintf(kubeProxyConfig, n.kubeconfig("kube-proxy")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := n.start("containerd", "containerd", "--config", filepath.Join(dir, "containerd.toml")); err != nil {
		return err
	}
	var last error
	if err := poll(ctx, wait, func() bool { _, last = n.ctr(ctx, "version"); return last == nil }); err != nil {
		return fmt.Errorf("containerd not up after %s: %w\n%s", wait, last, n.logTail("containerd"))
	}
	for _, img := range images {
		if out, err := n.ctr(ctx, "images", "import", "--all-platforms", img); err != nil {
			return fmt.Errorf("import %s: %w\n%s", img, err, out)
		}
	}
	if err := n.start("kubelet", filepath.Join(n.bin, "kubelet"), "--config="+filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig="+n.kubeconfig("kubelet"), "--hostname-override="+nodeName, "--node-ip="+nodeIP); err != nil {
		return err
	}
	return n.start("kube-proxy", filepath.Join(n.bin, "kube-proxy"), "--config="+filepath.Join(dir, "kube-proxy.yaml"))
}

// ctr runs containerd's client on the k8s.io namespace, where the CRI
// plugin keeps the node's images.
func (n *node) ctr(ctx context.Context, args ...string) (string, error) {
	return n.ns.run(ctx, "ctr", append([]string{"--address", containerdSock, "--namespace", "k8s.io"}, args...)...)
}

// cgroupRootOf returns the first cgroup v1 path of /proc/self/cgroup that
// is not the hierarchy's root: the test's own cgroup, which the node's
// cgroups go under. "" when the test runs in every root.
func cgroupRootOf() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && f[1] != "" && !strings.HasPrefix(f[1], "name=") && f[2] != "/" {
			return f[2], nil
		}
	}
	return "", errors.New("the test's process sits in the root of every cgroup hierarchy")
}

// makeCgroupRoot creates root in every cgroup v1 hierarchy (kubelet wants
// it in each), giving new cpuset cgroups their parent's CPUs and memory
// nodes so that tasks can join them. Teardown removes what it made.
func makeCgroupRoot(root string) error {
	mounts, err := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	if err != nil {
		return err
	}
	for _, procs := range mounts {
		hier := filepath.Dir(procs)
		if filepath.Base(hier) == "unified" {
			continue
		}
		dir := hier
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				cur, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil || strings.TrimSpace(string(cur)) != "" {
					continue
				}
				v, err := os.ReadFile(filepath.Join(parent, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}
