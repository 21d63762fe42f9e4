package config

import (
	"slices"
	"strings"
	"testing"
)

// TestUnreadValueKeys loads values with keys injection reads (the
// defaults', free-form subtrees, inert keys of Istio's ConfigMap, a key a
// configured template reads) and keys nothing reads, and wants a warning
// for each of the latter alone, or with StrictValues a refusal naming the
// first.
func TestUnreadValueKeys(t *testing.T) {
	t.Parallel()
	values := `
global:
  proxy:
    tracer: zipkin
    tracerr: datadog
    seccompProfile: {type: Localhost, localhostProfile: p.json}
    resources: {requests: {ephemeral-storage: 1Gi}}
  waypoint: {resources: {limits: {cpu: "1"}}}
  corpSetting: {enabled: true}
pilot:
  env: {PILOT_ANYTHING: "1"}
  autoscaleEnabled: true
custom:
  key: v
`
	injection := "templates:\n  extra: |\n    metadata:\n      labels:\n        custom: {{ .Values.custom.key | quote }}\n"
	cfg, err := Load(Sources{Values: []byte(values), InjectionConfig: []byte(injection), Set: []string{"global.proxy.logLevl=debug"}})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, w := range cfg.Warnings {
		key, _, _ := strings.Cut(strings.TrimPrefix(w, "values key "), " ")
		keys = append(keys, key)
	}
	want := []string{"global.corpSetting", "global.proxy.logLevl", "global.proxy.tracerr", "pilot.autoscaleEnabled"}
	if !slices.Equal(keys, want) {
		t.Errorf("warnings name %q, want %q:\n%s", keys, want, strings.Join(cfg.Warnings, "\n"))
	}

	_, err = Load(Sources{Values: []byte(values), InjectionConfig: []byte(injection), StrictValues: true})
	if err == nil || !strings.Contains(err.Error(), "global.corpSetting") || !strings.Contains(err.Error(), "--strict-values") {
		t.Errorf("strict: err %v, want a refusal naming global.corpSetting", err)
	}
	if _, err := Load(Sources{Values: []byte("global: {proxy: {tracer: zipkin}}"), StrictValues: true}); err != nil {
		t.Errorf("strict with read keys only: %v", err)
	}
}

// TestIstioMinor reads the Istio minor the built-ins follow from values
// compatibilityVersion, else global.tag, else the default tag's.
func TestIstioMinor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set     []string
		minor   int
		follows map[int]bool
	}{
		{nil, 31, map[int]bool{31: true, 32: false}},
		{[]string{"global.tag=1.30.4-distroless"}, 30, map[int]bool{31: false}},
		{[]string{"global.tag=1.32.0"}, 32, map[int]bool{32: true}},
		{[]string{"global.tag=1.32.0", "compatibilityVersion=1.30"}, 30, map[int]bool{31: false}},
		{[]string{"global.tag=sha-abc"}, 0, map[int]bool{31: true, 32: false}},
	} {
		cfg, err := Load(Sources{Set: tc.set})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.IstioMinor != tc.minor {
			t.Errorf("--set %v: IstioMinor %d, want %d", tc.set, cfg.IstioMinor, tc.minor)
		}
		for m, want := range tc.follows {
			if got := cfg.Follows(m); got != want {
				t.Errorf("--set %v: Follows(%d) = %v, want %v", tc.set, m, got, want)
			}
		}
	}
}
