//go:build node

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The node's addresses. They exist only inside the suite's network
// namespace: the node address sits on a veth pair whose both ends stay in
// it, pods on the CNI bridge behind it, and the only route besides theirs
// sends the Service range to the veth, so no packet has a way out.
const (
	nodeName    = "meshinject-node"
	nodeIP      = "10.250.0.1"
	nodeCIDR    = nodeIP + "/24"
	podCIDR     = "10.244.0.0/24"
	serviceCIDR = "10.96.0.0/16"
	apiServerIP = "10.96.0.1"  // the first address of serviceCIDR
	clusterDNS  = "10.96.0.10" // CoreDNS's Service
	apiPort     = 6443
)

// kubeletSysctls are the kernel settings kubelet writes unless they hold
// these values already (pkg/kubelet/cm's setupKernelTunables). None of them
// belongs to a network namespace, so a write would change the machine:
// the suite's mount namespace binds files holding these values over them.
var kubeletSysctls = map[string]string{
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// privatePaths get a tmpfs of their own in the suite's mount namespace:
// kubelet, containerd and the CNI plugins write below them at fixed paths.
var privatePaths = []string{"/run", "/var/lib", "/var/log"}

// namespaces is the network and mount namespace of the node tier, held by
// a sleeping process that nothing else runs in.
type namespaces struct {
	holder *exec.Cmd
	done   chan struct{}
	pid    int
	netIno uint64 // inode of the network namespace
	mntIno uint64 // inode of the mount namespace
}

// newNamespaces creates the namespaces (unshare) and prepares them: its own
// /etc/hosts and resolv.conf, tmpfs over privatePaths, kubelet's sysctls
// answered by files, loopback up, the node address on a veth pair and a
// route for the Service range.
func newNamespaces(ctx context.Context, work string) (*namespaces, error) {
	holder := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity")
	// No Pdeathsig: it fires when the forking thread ends, and dial ends
	// a thread it cannot move back out of the namespace.
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	ns := &namespaces{holder: holder, pid: holder.Process.Pid, done: make(chan struct{})}
	go func() { _ = holder.Wait(); close(ns.done) }()
	// unshare execs sleep once the namespaces exist: wait for that.
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", ns.pid))
		if strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			ns.kill()
			return nil, errors.New("unshare did not start sleep within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var err error
	if ns.netIno, err = nsInode(ns.pid, "net"); err != nil {
		ns.kill()
		return nil, err
	}
	if ns.mntIno, err = nsInode(ns.pid, "mnt"); err != nil {
		ns.kill()
		return nil, err
	}
	if err := ns.prepare(ctx, work); err != nil {
		ns.kill()
		return nil, err
	}
	return ns, nil
}

func (ns *namespaces) prepare(ctx context.Context, work string) error {
	etc := filepath.Join(work, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"hosts":       "127.0.0.1 localhost\n" + nodeIP + " " + nodeName + "\n",
		"resolv.conf": "# the node tier resolves nothing outside the cluster\nnameserver " + clusterDNS + "\nsearch cluster.local\n",
	}
	for k, v := range kubeletSysctls {
		files["sysctl-"+strings.ReplaceAll(k, "/", "-")] = v + "\n"
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	script := []string{"set -e"}
	for _, p := range privatePaths {
		script = append(script, "mount -t tmpfs -o mode=0755 tmpfs "+p)
	}
	script = append(script,
		"mount --bind "+etc+"/hosts /etc/hosts",
		"mount --bind "+etc+"/resolv.conf /etc/resolv.conf",
	)
	for k := range kubeletSysctls {
		script = append(script, "mount --bind "+etc+"/sysctl-"+strings.ReplaceAll(k, "/", "-")+" /proc/sys/"+k)
	}
	script = append(script,
		"ip link set lo up",
		"ip link add meshnode0 type veth peer name meshnode1",
		"ip addr add "+nodeCIDR+" dev meshnode0",
		"ip link set meshnode0 up",
		"ip link set meshnode1 up",
		"ip route add "+serviceCIDR+" dev meshnode0",
	)
	out, err := ns.run(ctx, "sh", "-c", strings.Join(script, "\n"))
	if err != nil {
		return fmt.Errorf("prepare namespaces: %w\n%s", err, out)
	}
	return nil
}

// command returns bin args to run in both namespaces.
func (ns *namespaces) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(ns.pid), "--net", "--mount", "--", bin}, args...)...)
}

// run runs bin args in both namespaces and returns its output.
func (ns *namespaces) run(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out, err := ns.command(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// netPath is the network namespace's file, for nsenter --net= and setns.
func (ns *namespaces) netPath() string { return fmt.Sprintf("/proc/%d/ns/net", ns.pid) }

// dial connects from inside the network namespace: a goroutine locked to
// its thread moves the thread into the namespace, creates the socket there
// and moves the thread back before unlocking it. A thread that cannot move
// back stays locked and ends with the goroutine (or, if it is the main
// thread, is never used again). The connection stays in the namespace.
func (ns *namespaces) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	if werr := ns.within(func() {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.DialContext(ctx, network, addr)
	}); werr != nil {
		return nil, werr
	}
	return c, err
}

// listen opens a listener inside the network namespace, as dial connects.
func (ns *namespaces) listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	var err error
	if werr := ns.within(func() { l, err = net.Listen(network, addr) }); werr != nil {
		return nil, werr
	}
	return l, err
}

// within runs f on a goroutine locked to a thread moved into the network
// namespace; the thread moves back after f, or ends with its goroutine if
// it cannot.
func (ns *namespaces) within(f func()) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(home)
		target, err := unix.Open(ns.netPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open %s: %w", ns.netPath(), err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- nil
	}()
	return <-ch
}

// kill ends the holder; the namespaces end with the last process in them.
func (ns *namespaces) kill() {
	_ = ns.holder.Process.Kill()
	<-ns.done
}

// nsInode returns the inode of process pid's namespace kind ("net", "mnt").
func nsInode(pid int, kind string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pidsIn returns the processes whose namespace kind has inode ino.
func pidsIn(kind string, ino uint64) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if got, err := nsInode(pid, kind); err == nil && got == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsInCgroups returns the processes of every cgroup under dir and its
// descendants (one controller's hierarchy).
func pidsInCgroups(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	slices.Sort(pids)
	return slices.Compact(pids)
}
