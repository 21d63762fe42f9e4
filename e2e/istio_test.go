//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// needsIstio skips scenarios that run Istio's own binaries when the suite
// was not given them (E2E_ISTIO; make test-e2e builds them).
func needsIstio(t *testing.T) {
	t.Helper()
	if suite.istio == "" {
		t.Skip("needs Istio's binaries (E2E_ISTIO; make test-e2e builds them)")
	}
}

// istioTool runs one of Istio's binaries with a deadline and returns its
// combined output.
func istioTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(suite.istio, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// iptablesCase is an injected pod whose init container istio-iptables
// must accept.
type iptablesCase struct {
	name string
	opts []podOpt
	// cni injects offline with pilot.cni.enabled (meshinject inject): the
	// init container is istio-validation.
	cni bool
	// rules the dry run prints (regular expressions, whole lines).
	rules []string
	// absent are rules it must not print.
	absent []string
	// applied are rules iptables-save reads back after a real run.
	applied []string
}

var iptablesCases = []iptablesCase{
	{name: "default", rules: []string{
		`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001`,
		`-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006`,
		`-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT`,
		`-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN`,
		`-A ISTIO_OUTPUT -j ISTIO_REDIRECT`,
	}, applied: []string{
		`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001`,
		`-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006`,
		`-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN`,
	}},
	{name: "traffic", opts: []podOpt{withAnnotations(
		"traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,172.16.0.0/12",
		"traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.96.0.0/12",
		"traffic.sidecar.istio.io/includeInboundPorts", "8080,8081",
		"traffic.sidecar.istio.io/excludeOutboundPorts", "5432",
		"traffic.sidecar.istio.io/excludeInterfaces", "eth9",
		"traffic.sidecar.istio.io/kubevirtInterfaces", "net1",
	)}, rules: []string{
		`-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN`,
		`-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT`,
		`-A ISTIO_OUTPUT -d 172.16.0.0/12 -j ISTIO_REDIRECT`,
		`-A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT`,
		`-A ISTIO_INBOUND -p tcp --dport 8081 -j ISTIO_IN_REDIRECT`,
		`-A PREROUTING -i eth9 -j RETURN`,
		`-I PREROUTING 1 -i net1 -d 10.0.0.0/8 -j ISTIO_REDIRECT`,
	}, absent: []string{
		`-A ISTIO_OUTPUT -j ISTIO_REDIRECT`, // only the included ranges go to Envoy
		`-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT`,
	}, applied: []string{
		`-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN`,
		`-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT`,
		`-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN`,
		`-A PREROUTING -d 10.0.0.0/8 -i net1 -j ISTIO_REDIRECT`,
		`-A PREROUTING -i eth9 -j RETURN`,
	}},
	{name: "ports", opts: []podOpt{withAnnotations(
		"traffic.sidecar.istio.io/excludeInboundPorts", "8081",
		"traffic.sidecar.istio.io/includeOutboundPorts", "9000",
	)}, rules: []string{
		`-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp --dport 8081 -j RETURN`,
		`-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT`,
		`-A ISTIO_OUTPUT -p tcp --dport 9000 -j ISTIO_REDIRECT`,
	}, applied: []string{
		`-A ISTIO_INBOUND -p tcp -m tcp --dport 8081 -j RETURN`,
		`-A ISTIO_OUTPUT -p tcp -m tcp --dport 9000 -j ISTIO_REDIRECT`,
	}},
	{name: "tproxy", opts: []podOpt{withAnnotations("sidecar.istio.io/interceptionMode", "TPROXY")}, rules: []string{
		`-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006`,
		`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001`,
	}, applied: []string{
		`-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff`,
	}},
	{name: "cni", cni: true, applied: []string{
		`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001`,
	}},
}

// TestIstioIptablesAcceptsInit: the init container meshinject injects
// runs as Istio's own istio-iptables (pilot-agent istio-iptables, the
// proxyv2 image's entry point) with exactly its arguments. In dry-run mode
// it exits 0 and prints rules that redirect outbound traffic to Envoy's
// 15001 and inbound to 15006, with the pod's exclusions. Where the machine
// allows (root, unshare, iptables: make e2e-host-tools), the rules are
// also applied in a network namespace the test creates, and read back;
// with CNI, the rules are applied as the CNI plugin would and the
// istio-validation container's own command, as its user, must pass.
func TestIstioIptablesAcceptsInit(t *testing.T) {
	needsIstio(t)
	ns := namespace(t, "iptables", map[string]string{"istio-injection": "enabled"})
	for _, c := range iptablesCases {
		t.Run(c.name, func(t *testing.T) {
			init := injectedInit(t, ns, c)
			if !c.cni {
				out := iptablesDryRun(t, init)
				for _, w := range c.rules {
					if !hasLine(out, w) {
						t.Errorf("istio-iptables %s: no rule %q in:\n%s", strings.Join(init.Args, " "), w, out)
					}
				}
				for _, w := range c.absent {
					if hasLine(out, w) {
						t.Errorf("istio-iptables %s: rule %q, which the pod's annotations exclude:\n%s", strings.Join(init.Args, " "), w, out)
					}
				}
			}
			if reason := netnsUnavailable(); reason != "" {
				t.Logf("rules not applied for real: %s", reason)
				return
			}
			saved := iptablesApply(t, init, c.cni)
			for _, w := range c.applied {
				if !hasLine(saved, w) {
					t.Errorf("after istio-iptables %s, iptables-save has no rule %q:\n%s", strings.Join(init.Args, " "), w, saved)
				}
			}
		})
	}
}

// injectedInit is c's pod's init container: created through the API
// server (the webhook injects it), or injected offline with CNI on.
func injectedInit(t *testing.T, ns string, c iptablesCase) *corev1.Container {
	t.Helper()
	pod := appPod("ipt-"+c.name, c.opts...)
	name := "istio-init"
	if c.cni {
		pod, name = injectOffline(t, pod, "--set", "pilot.cni.enabled=true"), "istio-validation"
	} else {
		pod = create(t, ns, pod)
	}
	init := find(pod.Spec.InitContainers, name)
	if init == nil {
		t.Fatalf("no %s in %v", name, names(pod.Spec.InitContainers))
	}
	if len(init.Command) > 0 || len(init.Args) == 0 || init.Args[0] != "istio-iptables" {
		t.Fatalf("%s runs %v %v; want the image's entry point (pilot-agent) with istio-iptables ...", name, init.Command, init.Args)
	}
	return init
}

// injectOffline runs meshinject inject on pod with the extra flags.
func injectOffline(t *testing.T, pod *corev1.Pod, flags ...string) *corev1.Pod {
	t.Helper()
	pod.APIVersion, pod.Kind, pod.Namespace = "v1", "Pod", "default"
	in, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.meshinject, append([]string{"inject", "-f", "-"}, flags...)...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("meshinject inject %v: %v", flags, err)
	}
	var injected corev1.Pod
	if err := yaml.Unmarshal(out, &injected); err != nil {
		t.Fatalf("meshinject inject output: %v\n%s", err, out)
	}
	return &injected
}

// iptablesDryRun runs istio-iptables with c's arguments and --dry-run,
// requires exit 0 and returns what it printed.
func iptablesDryRun(t *testing.T, c *corev1.Container) string {
	t.Helper()
	args := append(slices.Clone(c.Args), "--dry-run")
	out, err := istioTool(t, "pilot-agent", args...)
	if err != nil {
		t.Fatalf("pilot-agent %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// hasLine reports whether out has a line that is rule (a regular
// expression), give or take surrounding space.
func hasLine(out, rule string) bool {
	return regexp.MustCompile(`(?m)^\s*` + rule + `\s*$`).MatchString(out)
}

// netnsUnavailable says why rules cannot be applied for real here ("" when
// they can): it takes root and unshare, ip, iptables-save and setpriv.
func netnsUnavailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"unshare", "ip", "iptables-save", "iptables-restore", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (make e2e-host-tools installs iptables)"
		}
	}
	// The namespace a pod has: loopback and a veth interface with an address.
	probe := strings.Join(netnsSetup, " && ") + " && iptables-save -t nat >/dev/null"
	if out, err := exec.Command("unshare", "-n", "bash", "-c", probe).CombinedOutput(); err != nil {
		return "cannot set up a network namespace with a veth interface and iptables here: " + strings.TrimSpace(string(out))
	}
	return ""
}

// iptablesApply runs istio-iptables with c's arguments for real inside a
// new network namespace (loopback and one veth address, as a pod has) and
// returns iptables-save's nat and mangle tables. For istio-validation
// (cni), the rules are applied first as the CNI plugin applies them, then
// c's own command runs as c's user and must pass.
func iptablesApply(t *testing.T, c *corev1.Container, cni bool) string {
	t.Helper()
	agent := filepath.Join(suite.istio, "pilot-agent")
	apply := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return a == "--run-validation" || a == "--skip-rule-apply" })
	script := append([]string{"set -e"}, netnsSetup...)
	script = append(script,
		shellQuote(append([]string{agent}, apply...))+" >&2",
		"iptables-save -t nat",
		"iptables-save -t mangle",
	)
	if cni {
		uid := "1337"
		if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
			uid = strconv.FormatInt(*sc.RunAsUser, 10)
		}
		script = append(script, shellQuote(append([]string{"setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", agent}, c.Args...))+" >&2")
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "bash", "-c", strings.Join(script, "\n"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("in a network namespace, istio-iptables %s: %v\n%s%s", strings.Join(c.Args, " "), err, stdout.String(), tail(stderr.String(), 40))
	}
	return stdout.String()
}

// netnsSetup gives a new network namespace what a pod's has: loopback up
// and an interface with an address (istio-iptables needs one).
var netnsSetup = []string{
	"ip link set lo up",
	"ip link add eth0 type veth peer name eth1",
	"ip addr add 10.244.0.5/24 dev eth0",
	"ip link set eth0 up",
	"ip link set eth1 up",
}

// shellQuote quotes args for bash.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestCheckInject: istioctl x check-inject explains meshinject's webhook
// as it explains Istio's: the right configuration, injected or not, and
// the label that decides it.
func TestCheckInject(t *testing.T) {
	needsIstio(t)
	enabled := namespace(t, "check-on", map[string]string{"istio-injection": "enabled"})
	plain := namespace(t, "check-off", nil)
	create(t, enabled, appPod("web"))
	create(t, enabled, appPod("optout", withLabels("sidecar.istio.io/inject", "false")))
	create(t, plain, appPod("web"))
	cases := []struct {
		ns, pod, injected, reason string
	}{
		{enabled, "web", "✔", "Namespace label istio-injection=enabled matches"},
		{enabled, "optout", "✘", "Pod has sidecar.istio.io/inject=false label, preventing injection"},
		{plain, "web", "✘", "No matching namespace labels (istio.io/rev=default, istio-injection=enabled) or pod labels (istio.io/rev=default, sidecar.istio.io/inject=true)"},
	}
	for _, c := range cases {
		out, err := istioTool(t, "istioctl", "x", "check-inject", "--kubeconfig", suite.kubeconfig, "-n", c.ns, c.pod)
		if err != nil {
			t.Fatalf("istioctl x check-inject %s/%s: %v\n%s", c.ns, c.pod, err, out)
		}
		row := checkInjectRow(out, mwcDefault)
		if row == nil {
			t.Errorf("%s/%s: istioctl x check-inject does not list %s:\n%s", c.ns, c.pod, mwcDefault, out)
			continue
		}
		if row[0] != c.injected || row[1] != c.reason {
			t.Errorf("%s/%s: check-inject says %s %q for %s, want %s %q:\n%s", c.ns, c.pod, row[0], row[1], mwcDefault, c.injected, c.reason, out)
		}
		if strings.Contains(out, "multiple webhooks will inject") {
			t.Errorf("%s/%s: check-inject sees more than one webhook injecting:\n%s", c.ns, c.pod, out)
		}
	}
}

// TestIstioctlAnalyze: istioctl analyze has nothing to say about a pod
// meshinject injected, in the same namespace where it reports the pod
// created before injection was turned on (IST0103, the proxy is missing),
// which shows its injection analyzers ran.
func TestIstioctlAnalyze(t *testing.T) {
	needsIstio(t)
	ns := namespace(t, "analyze", nil)
	create(t, ns, appPod("before"))
	patch := []byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`)
	if _, err := suite.client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	assertSidecar(t, create(t, ns, appPod("web")), true, "default")
	out, _ := istioTool(t, "istioctl", "analyze", "--kubeconfig", suite.kubeconfig, "-n", ns)
	if !strings.Contains(out, "IST0103") || !strings.Contains(out, "Pod "+ns+"/before") {
		t.Errorf("istioctl analyze -n %s does not report the pod created before injection (IST0103), so it proves nothing:\n%s", ns, out)
	}
	if strings.Contains(out, "Pod "+ns+"/web") {
		t.Errorf("istioctl analyze -n %s reports the pod meshinject injected:\n%s", ns, out)
	}
}

// ansi matches terminal colour sequences.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// checkInjectRow returns the INJECTED and REASON cells of check-inject's
// row for the configuration name (nil when there is none).
func checkInjectRow(out, name string) []string {
	for _, line := range strings.Split(ansi.ReplaceAllString(out, ""), "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		// WEBHOOK REVISION INJECTED REASON: the revision may be empty.
		for _, mark := range []string{"✔", "✘"} {
			if _, reason, ok := strings.Cut(rest, mark); ok {
				return []string{mark, strings.TrimSpace(reason)}
			}
		}
	}
	return nil
}

// TestIstioctlTagLeavesMeshinjectAlone: `istioctl tag set default
// --revision <rev>`, Istio's documented upgrade step, deactivates "the"
// untagged webhook configuration of the default revision by giving its
// entries selectors that never match. It does not take meshinject's for
// that configuration: meshinject's selectors are unchanged afterwards.
// The tag's own configuration then claims the default revision's
// namespaces too, which istioctl x check-inject reports.
func TestIstioctlTagLeavesMeshinjectAlone(t *testing.T) {
	needsIstio(t)
	needsLocal(t)
	namespaceNamed(t, "istio-system", nil) // the tag's Service goes there
	mwcs := suite.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	before, err := mwcs.Get(t.Context(), mwcDefault, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := istioRevisionConfiguration("e2e-rev")
	if _, err := mwcs.Create(t.Context(), rev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, name := range []string{rev.Name, "istio-revision-tag-default"} {
			_ = mwcs.Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	out, err := istioTool(t, "istioctl", "tag", "set", "default", "--revision", "e2e-rev", "--skip-confirmation",
		"--kubeconfig", suite.kubeconfig, "--istioNamespace", "istio-system")
	if err != nil {
		t.Fatalf("istioctl tag set default --revision e2e-rev: %v\n%s", err, out)
	}
	if _, err := mwcs.Get(t.Context(), "istio-revision-tag-default", metav1.GetOptions{}); err != nil {
		t.Fatalf("istioctl tag set made no tag configuration (%v):\n%s", err, out)
	}
	// Both now claim istio-injection=enabled, and istioctl says so.
	enabled := namespace(t, "tagged", map[string]string{"istio-injection": "enabled"})
	if out, _ := istioTool(t, "istioctl", "x", "check-inject", "--kubeconfig", suite.kubeconfig, "-n", enabled, "-l", "app=web"); !strings.Contains(out, "multiple webhooks will inject") {
		t.Errorf("after istioctl tag set default, check-inject does not report two webhooks injecting:\n%s", out)
	}
	after, err := mwcs.Get(t.Context(), mwcDefault, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range before.Webhooks {
		b, a := before.Webhooks[i], after.Webhooks[i]
		if !equality.Semantic.DeepEqual(b.NamespaceSelector, a.NamespaceSelector) || !equality.Semantic.DeepEqual(b.ObjectSelector, a.ObjectSelector) {
			t.Errorf("istioctl tag set changed %s's entry %s: namespaceSelector %v, objectSelector %v (were %v, %v)",
				mwcDefault, a.Name, a.NamespaceSelector, a.ObjectSelector, b.NamespaceSelector, b.ObjectSelector)
		}
	}
}

// istioRevisionConfiguration is the webhook configuration Istio's chart
// installs for revision rev: labelled istio.io/rev=rev, its revision
// entries named *.sidecar-injector.istio.io, served by istiod-<rev>.
func istioRevisionConfiguration(rev string) *admissionregistrationv1.MutatingWebhookConfiguration {
	none, fail := admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.Fail
	path := "/inject"
	entry := func(name string, ns, obj []metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name: name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: "istio-system", Name: "istiod-" + rev, Path: &path},
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: ns},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: obj},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	in := func(k, v string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}}
	}
	notIn := func(k, v string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: []string{v}}
	}
	absent := func(k string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpDoesNotExist}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Labels: map[string]string{
			"istio.io/rev": rev, "app": "sidecar-injector", "app.kubernetes.io/name": "istiod"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			entry("rev.namespace.sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{in("istio.io/rev", rev), absent("istio-injection")},
				[]metav1.LabelSelectorRequirement{notIn("sidecar.istio.io/inject", "false")}),
			entry("rev.object.sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{absent("istio.io/rev"), absent("istio-injection")},
				[]metav1.LabelSelectorRequirement{notIn("sidecar.istio.io/inject", "false"), in("istio.io/rev", rev)}),
		},
	}
}
