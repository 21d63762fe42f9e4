package config

import (
	"strings"
	"testing"
)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Sources{})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Typed.Global
	if g.Hub != "docker.io/istio" || g.Proxy.Image != "proxyv2" || g.Proxy.StatusPort != 15020 {
		t.Errorf("defaults: hub %q image %q statusPort %d", g.Hub, g.Proxy.Image, g.Proxy.StatusPort)
	}
	if cfg.Injection.Policy != "enabled" || strings.Join(cfg.Injection.DefaultTemplates, ",") != "sidecar" {
		t.Errorf("injection defaults: %+v", cfg.Injection)
	}
	for _, n := range []string{"sidecar", "gateway", "grpc-agent", "grpc-simple"} {
		if cfg.Templates[n] == nil {
			t.Errorf("built-in template %s missing", n)
		}
	}
	if cfg.Mesh.GetTrustDomain() != "cluster.local" || cfg.Mesh.GetDefaultConfig().GetDiscoveryAddress() != defaultDiscoveryAddress {
		t.Errorf("mesh defaults: %v", cfg.Mesh)
	}
	if cfg.RevisionName() != "default" {
		t.Errorf("RevisionName = %q", cfg.RevisionName())
	}
}

func TestValuesMerge(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Sources{
		Values: []byte("global:\n  hub: registry.example\n  proxy:\n    resources:\n      limits:\n        cpu: null\n"),
		Set:    []string{"global.tag=1.28.9", "global.proxy.excludeInboundPorts=4,5,6", "global.proxy.statusPort=15021", "global.hub=override.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Typed.Global
	if g.Hub != "override.example" {
		t.Errorf("--set should win over the values file: hub = %q", g.Hub)
	}
	if g.Proxy.ExcludeInboundPorts != "4,5,6" {
		t.Errorf("--set value with commas = %q", g.Proxy.ExcludeInboundPorts)
	}
	if g.Proxy.StatusPort != 15021 {
		t.Errorf("--set integer = %d", g.Proxy.StatusPort)
	}
	if _, ok := g.Proxy.Resources.Limits["cpu"]; ok || g.Proxy.Resources.Limits["memory"] != "1Gi" {
		t.Errorf("null should delete only limits.cpu: %v", g.Proxy.Resources.Limits)
	}
	if g.Proxy.Image != "proxyv2" {
		t.Errorf("defaults not under the file should stay: image = %q", g.Proxy.Image)
	}
}

func TestLoadErrorsNameTheField(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		src  Sources
		want string
	}{
		"set without =":           {Sources{Set: []string{"global.hub"}}, `--set "global.hub": want key=value`},
		"values type":             {Sources{Set: []string{"global.proxy.statusPort=abc"}}, `field global.proxy.statusPort: "abc"`},
		"values port list":        {Sources{Set: []string{"global.proxy.excludeInboundPorts=80,x"}}, `field global.proxy.excludeInboundPorts: port "x"`},
		"values cidr":             {Sources{Set: []string{"global.proxy.includeIPRanges=10.0.0.0/99"}}, `field global.proxy.includeIPRanges: "10.0.0.0/99" is not a CIDR`},
		"values quantity":         {Sources{Values: []byte("global: {proxy: {resources: {requests: {cpu: fast}}}}")}, "field global.proxy.resources.requests.cpu"},
		"values cni provider":     {Sources{Set: []string{"pilot.cni.provider=calico"}}, `field pilot.cni.provider: "calico"`},
		"values yaml":             {Sources{Values: []byte("global: [")}, "values:"},
		"mesh unknown field":      {Sources{Mesh: []byte("defaultConfig: {statusPortt: 1}")}, "mesh config:"},
		"mesh status port":        {Sources{Mesh: []byte("defaultConfig: {statusPort: 70000}")}, "field defaultConfig.statusPort: 70000"},
		"injection unknown field": {Sources{InjectionConfig: []byte("policy: enabled\ndefaultTemplate: [x]\n")}, "injection config:"},
		"template parse":          {Sources{InjectionConfig: []byte("templates:\n  broken: '{{ .Foo '\n")}, `parse template "broken"`},
		"alias target":            {Sources{InjectionConfig: []byte("aliases:\n  a: [nosuch]\n")}, `field aliases.a: template "nosuch" not found`},
		"default template":        {Sources{InjectionConfig: []byte("defaultTemplates: [nosuch]\n")}, `field defaultTemplates[0]: template "nosuch" not found`},
		"selector":                {Sources{InjectionConfig: []byte("neverInjectSelector:\n- matchExpressions: [{key: a, operator: Nope}]\n")}, "field neverInjectSelector[0]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestInjectionConfigForms(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		data  string
		check func(*Config) bool
	}{
		"bare template is sidecar": {"spec:\n  containers:\n  - name: x\n", func(c *Config) bool {
			return strings.Contains(c.Injection.Templates["sidecar"], "name: x")
		}},
		"configmap data.config": {"kind: ConfigMap\ndata:\n  config: |\n    policy: disabled\n", func(c *Config) bool { return c.Injection.Policy == "disabled" }},
		"legacy template key":   {"policy: enabled\ntemplate: 'spec: {}'\n", func(c *Config) bool { return c.Injection.Templates["sidecar"] == "spec: {}" }},
		"user template added":   {"templates:\n  extra: 'spec: {}'\n", func(c *Config) bool { return c.Templates["extra"] != nil && c.Templates["gateway"] != nil }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(Sources{InjectionConfig: []byte(tc.data)})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("unexpected config: %+v", cfg.Injection)
			}
		})
	}
}

func TestRevision(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Sources{Revision: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Mesh.GetDefaultConfig().GetDiscoveryAddress(); got != "istiod-canary.istio-system.svc:15012" {
		t.Errorf("discovery address = %q", got)
	}
	if cfg.RevisionName() != "canary" {
		t.Errorf("RevisionName = %q", cfg.RevisionName())
	}
	cfg, err = Load(Sources{Revision: "canary", Mesh: []byte("defaultConfig: {discoveryAddress: custom:15012}")})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Mesh.GetDefaultConfig().GetDiscoveryAddress(); got != "custom:15012" {
		t.Errorf("an explicit discovery address must be kept, got %q", got)
	}
}

// TestUnknownFunctionFailsAtLoad: a template calling a function meshinject
// lacks is refused when the config loads, naming template, line and
// function, never at admission.
func TestUnknownFunctionFailsAtLoad(t *testing.T) {
	t.Parallel()
	cfg := "templates:\n  custom: |\n    metadata:\n      labels:\n        a: {{ noSuchFunction .Values }}\n"
	_, err := Load(Sources{InjectionConfig: []byte(cfg)})
	if err == nil {
		t.Fatal("a template calling an unknown function loaded")
	}
	for _, want := range []string{`"custom"`, "custom:3", `"noSuchFunction" not defined`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestMeshFieldsWin: every mesh field a user writes wins over the default,
// false included (a proto merge would keep the default true).
func TestMeshFieldsWin(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Sources{Mesh: []byte("enablePrometheusMerge: false\ndefaultConfig:\n  statusPort: 15999\n")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mesh.GetEnablePrometheusMerge().GetValue() {
		t.Error("enablePrometheusMerge: false did not win over the default")
	}
	dc := cfg.Mesh.GetDefaultConfig()
	if dc.GetStatusPort() != 15999 || dc.GetDiscoveryAddress() != defaultDiscoveryAddress {
		t.Errorf("defaultConfig not merged field by field: %v", dc)
	}
}

// TestIstioValuesJSON: the values key of Istio's ConfigMap is JSON.
func TestIstioValuesJSON(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Sources{Values: []byte(`{"global": {"hub": "registry.example/istio", "tag": "1.30.3", "proxy": {"statusPort": 15020}}, "pilot": {"env": {"COMPLIANCE_POLICY": "fips-140-3"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Typed.Global.Hub != "registry.example/istio" || cfg.CompliancePolicy != "fips-140-3" {
		t.Errorf("hub %q, compliance policy %q", cfg.Typed.Global.Hub, cfg.CompliancePolicy)
	}
}

// TestHashNamesTheSources: equal sources give the configuration the same
// hash; any change to one source gives another.
func TestHashNamesTheSources(t *testing.T) {
	t.Parallel()
	base := Sources{Values: []byte("global:\n  hub: registry.example\n"), Set: []string{"global.tag=1.31.4"}}
	load := func(src Sources) string {
		t.Helper()
		cfg, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Hash
	}
	h := load(Sources{Values: base.Values, Set: []string{"global.tag=1.31.4", "global.hub=x"}})
	if joined := load(Sources{Values: base.Values, Set: []string{"global.tag=1.31.4global.hub=x"}}); joined == h {
		t.Errorf("two overrides and their concatenation share the hash %s", h)
	}
	h = load(base)
	if len(h) != 12 || load(base) != h {
		t.Fatalf("hash %q, and %q loading the same sources again", h, load(base))
	}
	for name, src := range map[string]Sources{
		"values":   {Values: []byte("global:\n  hub: registry.other\n"), Set: base.Set},
		"set":      {Values: base.Values, Set: []string{"global.tag=1.31.5"}},
		"mesh":     {Values: base.Values, Set: base.Set, Mesh: []byte("trustDomain: example.org\n")},
		"revision": {Values: base.Values, Set: base.Set, Revision: "canary"},
	} {
		if load(src) == h {
			t.Errorf("%s: a different source gives the same hash %s", name, h)
		}
	}
}
