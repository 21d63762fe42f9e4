//go:build node

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// nodeTier is the node tier's state beside suite's.
var nodeTier struct {
	skip   string // why the tier cannot run here; "" when it runs
	node   *node
	images string    // folder of the images' OCI archives (E2E_IMAGES)
	before hostState // the machine before the node came up
}

// runNode is the node tier's TestMain: it brings up a one-node cluster
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd, kubelet, kube-proxy and CoreDNS) in a network and mount
// namespace of its own, runs the scenarios, tears the node down by pid and
// checks the machine is as it was. Where it cannot run (not root, or a
// tool missing) every scenario skips, saying why.
func runNode(m *testing.M) int {
	if why := nodeUnsupported(); why != "" {
		nodeTier.skip = why
		fmt.Fprintln(os.Stderr, "node: skipping the node tier:", why)
		return m.Run()
	}
	ctx := context.Background()
	if left := clearStaleCgroups(nodeCgroupRoot()); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "node: removed %d empty cgroups an interrupted run had left\n", len(left))
	}
	before, err := readHost(ctx)
	nodeTier.before = before
	if err != nil {
		fmt.Fprintln(os.Stderr, "node: read the machine's state:", err)
		return 1
	}
	code := 1
	start := time.Now()
	err = setupNode(ctx)
	if err == nil {
		fmt.Fprintf(os.Stderr, "node: cluster up in %s; resident memory: %s\n", time.Since(start).Round(time.Millisecond), nodeTier.node.rss())
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "node:", err)
	}
	start = time.Now()
	if err := teardownNode(before); err != nil {
		fmt.Fprintln(os.Stderr, "node: teardown:", err)
		code = 1
	}
	after, err := readHost(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node: read the machine's state:", err)
		return 1
	}
	if d := before.diff(after); len(d) > 0 {
		fmt.Fprintln(os.Stderr, "node: the machine changed:\n  "+strings.Join(d, "\n  "))
		return 1
	}
	fmt.Fprintf(os.Stderr, "node: torn down in %s; no process, mount, link, iptables rule, sysctl, cgroup or path of the node left on the machine\n",
		time.Since(start).Round(time.Millisecond))
	return code
}

// stopGrace is how long a node daemon has to exit after SIGTERM at
// teardown before it is killed: nothing of theirs outlives the suite.
const stopGrace = 5 * time.Second

// nodeUnsupported says why the node tier cannot run here, or "".
func nodeUnsupported() string {
	if os.Geteuid() != 0 {
		return "needs root (namespaces, mounts, containerd)"
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "iptables-save", "ip6tables-save", "containerd", "ctr", "runc", "/usr/lib/cni/bridge"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (make node-host-tools installs Debian's packages as root)"
		}
	}
	return ""
}

// needsNode skips a scenario where the node tier cannot run.
func needsNode(t *testing.T) {
	t.Helper()
	if nodeTier.skip != "" {
		t.Skip("node tier: " + nodeTier.skip)
	}
}

func setupNode(ctx context.Context) error {
	var err error
	if suite.repo, err = filepath.Abs(".."); err != nil {
		return err
	}
	if suite.work, err = os.MkdirTemp("", "meshinject-node-"); err != nil {
		return err
	}
	env := map[string]*string{"E2E_K8S_ASSETS": nil, "E2E_MESHINJECT": &suite.meshinject, "E2E_IMAGES": &nodeTier.images, "E2E_OPS": nil}
	for k, dst := range env {
		v := os.Getenv(k)
		if v == "" {
			return fmt.Errorf("%s must be set (run make test-node)", k)
		}
		if dst != nil {
			*dst = v
		}
	}
	n := &node{work: suite.work, bin: os.Getenv("E2E_K8S_ASSETS"), cgroupRoot: nodeCgroupRoot()}
	nodeTier.node = n
	suite.kubectl = filepath.Join(n.bin, "kubectl")
	if err := makeCgroupRoot(n.cgroupRoot); err != nil {
		return fmt.Errorf("cgroup root %s: %w", n.cgroupRoot, err)
	}
	if n.ns, err = newNamespaces(ctx, suite.work); err != nil {
		return err
	}
	suite.netns = n.ns.netPath()
	if err := n.writeCredentials(); err != nil {
		return err
	}
	suite.kubeconfig = n.kubeconfig("admin")
	suite.cfg = n.restConfig("admin")
	if suite.client, err = kubernetes.NewForConfig(suite.cfg); err != nil {
		return err
	}
	if err := n.startControlPlane(ctx); err != nil {
		return err
	}
	images, err := filepath.Glob(filepath.Join(nodeTier.images, "*.oci.tar"))
	if err != nil || len(images) == 0 {
		return fmt.Errorf("no image archive in %s (make node-images)", nodeTier.images)
	}
	if err := n.startRuntime(ctx, images); err != nil {
		return err
	}
	// What a pull by digest records: the image under its digest reference
	// too, which the chart's image.digest names.
	digest, err := os.ReadFile(filepath.Join(nodeTier.images, "meshinject.digest"))
	if err != nil {
		return fmt.Errorf("make image writes meshinject.digest: %w", err)
	}
	byDigest := strings.Split(meshinjectImage, ":")[0] + "@" + strings.TrimSpace(string(digest))
	if out, err := n.ctr(ctx, "images", "tag", meshinjectImage, byDigest); err != nil {
		return fmt.Errorf("ctr images tag %s: %w\n%s", byDigest, err, out)
	}
	if err := n.startRegistry(ctx, nodeTier.images); err != nil {
		return err
	}
	if err := n.waitNodeReady(ctx); err != nil {
		return err
	}
	return n.startDNS(ctx)
}

// teardownNode stops the node's processes by pid: the daemons with
// SIGTERM, then every container process (the processes of the node's
// cgroups) and every process left in the mount namespace (runc's shims)
// with SIGKILL, then the namespaces' holder; it removes the cgroups the
// node made and the suite's folder.
func teardownNode(before hostState) error {
	n := nodeTier.node
	if n == nil {
		return nil
	}
	var errs []error
	for _, c := range n.closers {
		_ = c()
	}
	// The daemons (kube-proxy and kubelet among them) first, together, so
	// nothing restarts the containers that go next.
	var stopping sync.WaitGroup
	for _, p := range n.procs {
		if p.name != "containerd" {
			stopping.Go(func() { p.stopWithin(stopGrace) })
		}
	}
	stopping.Wait()
	if n.ns != nil && n.cgroupRoot != "" {
		for _, ctrl := range []string{"memory", "cpu", "pids", "freezer"} {
			for _, pid := range pidsInCgroups(filepath.Join("/sys/fs/cgroup", ctrl, n.cgroupRoot)) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for _, p := range n.procs {
			if p.name == "containerd" {
				p.stopWithin(stopGrace)
			}
		}
		n.ns.kill()
		// Whatever is left in the namespaces (runc's shims, a plugin a
		// daemon had started) is killed until none is.
		deadline := time.Now().Add(30 * time.Second)
		for {
			left := slices.Concat(pidsIn("mnt", n.ns.mntIno), pidsIn("net", n.ns.netIno))
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("processes still in the node's namespaces: %s", describePids(left)))
				break
			}
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n.cgroupRoot != "" {
		if err := removeNewCgroups(before.cgroups, n.cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	if os.Getenv("E2E_KEEP") == "" {
		if err := os.RemoveAll(suite.work); err != nil {
			errs = append(errs, err)
		}
	} else {
		fmt.Fprintln(os.Stderr, "node: logs kept in", suite.work)
	}
	return errors.Join(errs...)
}

// describePids names each process: pid and command line.
func describePids(pids []int) string {
	var out []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d (%s)", pid, strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " ")))
	}
	return strings.Join(out, ", ")
}

// rss lists the resident memory of the node's processes (VmRSS).
func (n *node) rss() string {
	var out []string
	for _, p := range n.procs {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				out = append(out, fmt.Sprintf("%s %d MiB", p.name, kb/1024))
			}
		}
	}
	return strings.Join(out, ", ")
}

// nodeCgroupRoot is kubelet's --cgroup-root: a folder under the test's own
// cgroup (or a folder of the test's pid where it has none).
func nodeCgroupRoot() string {
	root, err := cgroupRootOf()
	if err != nil {
		root = fmt.Sprintf("/meshinject-node-%d", os.Getpid())
	}
	return filepath.Join(root, "meshinject-node")
}

// clearStaleCgroups removes, deepest first, the empty cgroups below root
// in every hierarchy: what a run killed before its teardown left. It
// returns the folders it removed.
func clearStaleCgroups(root string) []string {
	var stale []string
	for _, d := range cgroupDirs() {
		rel := strings.TrimPrefix(d, "/sys/fs/cgroup/")
		if i := strings.Index(rel, "/"); i >= 0 && strings.HasPrefix(rel[i:]+"/", root+"/") {
			stale = append(stale, d)
		}
	}
	slices.SortFunc(stale, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var removed []string
	for _, d := range stale {
		if os.Remove(d) == nil {
			removed = append(removed, d)
		}
	}
	return removed
}
