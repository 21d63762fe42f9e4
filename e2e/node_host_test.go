//go:build node

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// hostSysctls are read before and after the node tier: kubelet's six,
// and those that kube-proxy, the CNI bridge and containerd touch inside
// the network namespace, read here in the machine's own.
var hostSysctls = []string{
	"/proc/sys/kernel/panic", "/proc/sys/kernel/panic_on_oops", "/proc/sys/vm/overcommit_memory",
	"/proc/sys/vm/panic_on_oom", "/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes",
	"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/route_localnet",
	"/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/netfilter/nf_conntrack_max",
	"/sys/module/nf_conntrack/parameters/hashsize", "/proc/sys/fs/inotify/max_user_instances",
}

// hostPaths are where kubelet, containerd and the CNI plugins write by
// default; the node tier keeps them inside its mount namespace.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/var/lib/containerd", "/run/containerd", "/run/netns",
	"/var/log/containers", "/var/log/pods", "/usr/libexec/kubernetes", "/etc/cni/net.d", "/etc/kubernetes",
}

// hostState is what the node tier must leave as it found it.
type hostState struct {
	sysctls  map[string]string
	links    []string
	iptables string
	mounts   []string
	paths    []string // those of hostPaths that exist
	cgroups  []string // every cgroup folder of every hierarchy
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// readHost reads the machine's state from the test process, which stays
// in the machine's namespaces.
func readHost(ctx context.Context) (hostState, error) {
	h := hostState{sysctls: map[string]string{}}
	for _, p := range hostSysctls {
		b, err := os.ReadFile(p)
		if err != nil {
			h.sysctls[p] = "(absent)"
			continue
		}
		h.sysctls[p] = strings.TrimSpace(string(b))
	}
	out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
	if err != nil {
		return h, fmt.Errorf("ip link: %w", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			h.links = append(h.links, strings.TrimSuffix(f[1], ":"))
		}
	}
	var rules []string
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.CommandContext(ctx, save).Output()
		if err != nil {
			return h, fmt.Errorf("%s: %w", save, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "#") {
				rules = append(rules, counters.ReplaceAllString(l, ""))
			}
		}
	}
	h.iptables = strings.Join(rules, "\n")
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return h, err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			h.mounts = append(h.mounts, f[4])
		}
	}
	slices.Sort(h.mounts)
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			h.paths = append(h.paths, p)
		}
	}
	h.cgroups = cgroupDirs()
	return h, nil
}

// cgroupDirs lists every cgroup folder under /sys/fs/cgroup.
func cgroupDirs() []string {
	var dirs []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs
}

// diff lists how after differs from h, empty when nothing does.
func (h hostState) diff(after hostState) []string {
	var d []string
	for _, p := range hostSysctls {
		if h.sysctls[p] != after.sysctls[p] {
			d = append(d, fmt.Sprintf("%s: %s before, %s after", p, h.sysctls[p], after.sysctls[p]))
		}
	}
	lists := []struct {
		what          string
		before, after []string
	}{
		{"network links", h.links, after.links},
		{"mount points", h.mounts, after.mounts},
		{"paths", h.paths, after.paths},
		{"cgroups", h.cgroups, after.cgroups},
	}
	for _, l := range lists {
		if added, removed := setDiff(l.before, l.after); len(added)+len(removed) > 0 {
			d = append(d, fmt.Sprintf("%s: added %v, removed %v", l.what, added, removed))
		}
	}
	if h.iptables != after.iptables {
		d = append(d, "iptables rules changed:\n"+after.iptables)
	}
	return d
}

func setDiff(before, after []string) (added, removed []string) {
	for _, a := range after {
		if !slices.Contains(before, a) {
			added = append(added, a)
		}
	}
	for _, b := range before {
		if !slices.Contains(after, b) {
			removed = append(removed, b)
		}
	}
	return added, removed
}

// removeNewCgroups removes the cgroup folders that are not in before and
// lie on the node's cgroup root's path (its ancestors the suite made, the
// root and below), deepest first, retrying while the kernel still frees
// their last tasks. Another's new cgroup is left alone (and reported by
// the machine check).
func removeNewCgroups(before []string, root string) error {
	onPath := func(dir string) bool {
		rel := strings.TrimPrefix(dir, "/sys/fs/cgroup/")
		if i := strings.Index(rel, "/"); i >= 0 {
			rel = rel[i:]
		} else {
			return false
		}
		return strings.HasPrefix(rel, root) || strings.HasPrefix(root, rel+"/")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var added []string
		for _, d := range cgroupDirs() {
			if !slices.Contains(before, d) && onPath(d) {
				added = append(added, d)
			}
		}
		if len(added) == 0 {
			return nil
		}
		slices.SortFunc(added, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		var last error
		for _, d := range added {
			if err := os.Remove(d); err != nil {
				last = err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups left: %v (%w)", added, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
