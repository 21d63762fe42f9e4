package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/internal/config"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	selectors := []byte(`
neverInjectSelector:
- matchLabels: {team: legacy}
alwaysInjectSelector:
- matchExpressions: [{key: mesh, operator: In, values: ["yes"]}]
`)
	disabled := []byte("policy: disabled\n")
	label := func(k, v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Labels[k] = v }
	}
	tests := map[string]struct {
		cfg      []byte
		ns       string
		force    bool
		pod      *corev1.Pod
		inject   bool
		kind     string
		warnings int
	}{
		"default enabled":             {pod: testPod("a"), inject: true},
		"host network":                {pod: testPod("a", func(p *corev1.Pod) { p.Spec.HostNetwork = true }), kind: SkipHostNetwork},
		"kube-system":                 {ns: "kube-system", pod: testPod("a"), kind: SkipIgnoredNS},
		"local-path-storage":          {ns: "local-path-storage", pod: testPod("a"), kind: SkipIgnoredNS},
		"annotation false":            {pod: testPod("a", withAnnotation(AnnotationInject, "false")), kind: SkipExplicitOff},
		"label wins over annotation":  {pod: testPod("a", withAnnotation(AnnotationInject, "true"), label(AnnotationInject, "false")), kind: SkipExplicitOff},
		"label true beats disabled":   {cfg: disabled, pod: testPod("a", label(AnnotationInject, "true")), inject: true},
		"unknown value warns":         {pod: testPod("a", withAnnotation(AnnotationInject, "yes")), inject: true, warnings: 1},
		"empty value uses default":    {cfg: disabled, pod: testPod("a", withAnnotation(AnnotationInject, "")), kind: skipPolicyDisabled},
		"policy disabled":             {cfg: disabled, pod: testPod("a"), kind: skipPolicyDisabled},
		"never selector":              {cfg: selectors, pod: testPod("a", label("team", "legacy")), kind: skipNeverSelector},
		"never selector vs explicit":  {cfg: selectors, pod: testPod("a", label("team", "legacy"), withAnnotation(AnnotationInject, "true")), inject: true},
		"always selector vs disabled": {cfg: append(append([]byte{}, selectors...), disabled...), pod: testPod("a", label("mesh", "yes")), inject: true},
		"force ignores policy":        {cfg: disabled, force: true, pod: testPod("a"), inject: true},
		"force keeps explicit false":  {force: true, pod: testPod("a", withAnnotation(AnnotationInject, "false")), kind: SkipExplicitOff},
		"unknown policy":              {cfg: []byte("policy: sometimes\n"), pod: testPod("a"), kind: SkipPolicyUnknown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := mustConfig(t, config.Sources{InjectionConfig: tc.cfg})
			ns := tc.ns
			if ns == "" {
				ns = "apps"
			}
			d := decide(cfg, tc.pod, ns, tc.force)
			if d.Inject != tc.inject || d.Kind != tc.kind {
				t.Errorf("Decide = inject %v kind %q (%s), want inject %v kind %q", d.Inject, d.Kind, d.Reason, tc.inject, tc.kind)
			}
			if !d.Inject && d.Reason == "" {
				t.Error("skip without a reason")
			}
			if len(d.Warnings) != tc.warnings {
				t.Errorf("warnings = %v, want %d", d.Warnings, tc.warnings)
			}
		})
	}
}
