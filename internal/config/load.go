package config

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"text/template"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/internal/validate"
	"github.com/meshinject/meshinject/templates"
)

//go:embed defaults/*.yaml
var defaults embed.FS

// Sources are the raw configuration inputs. Every field is optional; the
// zero value loads the embedded defaults.
type Sources struct {
	// InjectionConfig is an injection config in YAML or JSON, a ConfigMap
	// holding one under data.config, or a bare template (taken as the
	// "sidecar" template). Nil means the default config.
	InjectionConfig []byte
	// Values is a values tree in YAML or JSON (or a ConfigMap holding one
	// under data.values), merged over the defaults as Helm merges a values
	// file: maps merge, other values replace, an explicit null deletes.
	Values []byte
	// Set holds key=value overrides applied after Values, e.g.
	// "global.hub=registry.example". The value is taken verbatim (commas
	// included); true/false, null and integers become those types.
	Set []string
	// Mesh is a mesh config in YAML or JSON (or a ConfigMap holding one under
	// data.mesh), merged over the default mesh config.
	Mesh []byte
	// Revision is the control-plane revision; "" or "default" is the default
	// revision. When empty, values.revision is used.
	Revision string
	// StrictValues refuses values keys injection does not read; by
	// default they load with a warning (Config.Warnings).
	StrictValues bool
}

// Load merges src over the embedded defaults, validates everything and
// compiles the templates. Errors name the input and field at fault.
func Load(src Sources) (*Config, error) {
	cfg := &Config{}
	var err error
	var user map[string]any
	if cfg.Values, user, err = loadValues(src.Values, src.Set); err != nil {
		return nil, err
	}
	if err := decodeValues(cfg.Values, &cfg.Typed); err != nil {
		return nil, err
	}
	cfg.CompliancePolicy = compliancePolicy(cfg.Typed.Pilot.Env)
	if cfg.ClusterTrustBundle, err = clusterTrustBundle(cfg.Typed.Pilot.Env); err != nil {
		return nil, err
	}
	cfg.IstioMinor = istioMinor(cfg.Values)
	cfg.Revision = src.Revision
	if cfg.Revision == "" {
		cfg.Revision = cfg.Typed.Revision
	} else if src.Revision != "default" {
		// Templates read the revision from values, as from Istio's chart.
		cfg.Values["revision"] = src.Revision
		cfg.Typed.Revision = src.Revision
	}
	if cfg.Revision == "default" {
		cfg.Revision = ""
	}
	if cfg.Mesh, cfg.DefaultProxyConfig, err = loadMesh(src.Mesh, cfg.Revision, cfg.Typed.Global.IstioNamespace); err != nil {
		return nil, err
	}
	if err := loadInjection(src.InjectionConfig, cfg); err != nil {
		return nil, err
	}
	if err := cfg.checkKeys(user, src.StrictValues); err != nil {
		return nil, err
	}
	cfg.Hash = src.hash()
	return cfg, nil
}

// hash is Config.Hash for src: each input length-prefixed, so no two
// different sources run together into the same bytes.
func (src Sources) hash() string {
	h := sha256.New()
	for _, part := range append([]string{string(src.InjectionConfig), string(src.Values), string(src.Mesh), src.Revision}, src.Set...) {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func compliancePolicy(env map[string]any) string {
	if v, ok := env["COMPLIANCE_POLICY"]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return os.Getenv("COMPLIANCE_POLICY")
}

// istioMinor is the minor of values compatibilityVersion ("1.30"), else of
// global.tag ("1.30.4", "1.30.4-distroless"); 0 when neither is a 1.x
// version (a digest, "latest", a development tag).
func istioMinor(values map[string]any) int {
	for _, v := range []any{values["compatibilityVersion"], valueOf(values, "global", "tag")} {
		s, ok := v.(string)
		if !ok {
			continue
		}
		rest, ok := strings.CutPrefix(s, "1.")
		if !ok {
			continue
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(rest)
		}
		if n, err := strconv.Atoi(rest[:end]); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// valueOf is the value at path in values, nil when absent.
func valueOf(values map[string]any, path ...string) any {
	var cur any = values
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// clusterTrustBundle is values pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API:
// a boolean, false when unset. Istio's templates compare it with true, so
// a string "true" fails their rendering; it is refused here instead.
func clusterTrustBundle(env map[string]any) (bool, error) {
	switch v := env["ENABLE_CLUSTER_TRUST_BUNDLE_API"].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	default:
		return false, fmt.Errorf("values: field pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API: %s is not a boolean (true or false, unquoted)", valueAt(env, "ENABLE_CLUSTER_TRUST_BUNDLE_API"))
	}
}

func mustDefault(name string) []byte {
	b, err := defaults.ReadFile("defaults/" + name)
	if err != nil {
		panic("config: embedded default " + name + " missing: " + err.Error())
	}
	return b
}

// configMapData returns data[key] when b is a ConfigMap, else b.
func configMapData(b []byte, key string) []byte {
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err == nil && cm.Kind == "ConfigMap" {
		if v, ok := cm.Data[key]; ok {
			return []byte(v)
		}
	}
	return b
}

// loadValues returns the defaults with user and set merged over them, and
// the user's own tree (user and set alone).
func loadValues(user []byte, set []string) (merged, own map[string]any, err error) {
	var base map[string]any
	if err := yaml.Unmarshal(mustDefault("values.yaml"), &base); err != nil {
		return nil, nil, fmt.Errorf("default values: %w", err)
	}
	own = map[string]any{}
	if len(bytes.TrimSpace(user)) > 0 {
		var over map[string]any
		if err := yaml.Unmarshal(configMapData(user, "values"), &over); err != nil {
			return nil, nil, fmt.Errorf("values: %w", err)
		}
		maps.Copy(own, over)
		mergeValues(base, over)
	}
	for _, kv := range set {
		if err := SetValue(base, kv); err != nil {
			return nil, nil, err
		}
		if err := SetValue(own, kv); err != nil {
			return nil, nil, err
		}
	}
	return base, own, nil
}

// checkKeys puts a warning in c.Warnings for each key of the user's values
// that injection does not read, or refuses the first when strict.
func (c *Config) checkKeys(user map[string]any, strict bool) error {
	var defaults map[string]any
	if err := yaml.Unmarshal(mustDefault("values.yaml"), &defaults); err != nil {
		return fmt.Errorf("default values: %w", err)
	}
	for _, path := range newKeyChecker(defaults, c.Templates).unread(user) {
		if strict {
			return fmt.Errorf("values: key %s is not read by injection (refused by --strict-values)", path)
		}
		c.Warnings = append(c.Warnings, unreadWarning(path))
	}
	return nil
}

// mergeValues merges over into base in place, as Helm merges values files:
// nested maps merge, any other value replaces, and a nil value deletes the
// key from base.
func mergeValues(base, over map[string]any) {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		if om, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				mergeValues(bm, om)
				continue
			}
		}
		base[k] = v
	}
}

// SetValue applies one --set key=value to values.
func SetValue(values map[string]any, kv string) error {
	key, raw, ok := strings.Cut(kv, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want key=value", kv)
	}
	parts := strings.Split(key, ".")
	m := values
	for _, p := range parts[:len(parts)-1] {
		if p == "" {
			return fmt.Errorf("--set %q: empty path element", kv)
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	last := parts[len(parts)-1]
	if last == "" {
		return fmt.Errorf("--set %q: empty path element", kv)
	}
	m[last] = scalar(raw)
	return nil
}

// scalar types a --set value: booleans, null and integers get their type,
// everything else stays the verbatim string.
func scalar(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	var n json.Number
	if err := json.Unmarshal([]byte(s), &n); err == nil && !strings.ContainsAny(s, ".eE") {
		if i, err := n.Int64(); err == nil {
			return i
		}
	}
	return s
}

func decodeValues(values map[string]any, out *values) error {
	b, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("values: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("values: field %s: %s is not a valid %s", te.Field, valueAt(values, te.Field), te.Type)
		}
		return fmt.Errorf("values: %w", err)
	}
	return validateValues(out)
}

// valueAt renders the value at a dotted path of values, for error messages.
func valueAt(values map[string]any, path string) string {
	var cur any = values
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "value"
		}
		cur = m[p]
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return "value"
	}
	return string(b)
}

func validateValues(v *values) error {
	p := &v.Global.Proxy
	checks := []struct {
		field string
		err   error
	}{
		{"global.proxy.includeIPRanges", validate.CIDRs(p.IncludeIPRanges, true)},
		{"global.proxy.excludeIPRanges", validate.CIDRs(p.ExcludeIPRanges, false)},
		{"global.proxy.includeInboundPorts", validate.Ports(p.IncludeInboundPorts, true)},
		{"global.proxy.excludeInboundPorts", validate.Ports(p.ExcludeInboundPorts, false)},
		{"global.proxy.includeOutboundPorts", validate.Ports(p.IncludeOutboundPorts, true)},
		{"global.proxy.excludeOutboundPorts", validate.Ports(p.ExcludeOutboundPorts, false)},
		{"global.proxy.logLevel", validate.LogLevel(p.LogLevel)},
		{"global.proxy.componentLogLevel", validate.ScopedLogLevels(p.ComponentLogLevel)},
		{"global.logging.level", validate.ScopedLogLevels(v.Global.Logging.Level)},
	}
	for _, c := range checks {
		if c.err != nil {
			return fmt.Errorf("values: field %s: %w", c.field, c.err)
		}
	}
	if p.StatusPort < 0 || p.StatusPort > 65535 {
		return fmt.Errorf("values: field global.proxy.statusPort: %d is not in 0-65535", p.StatusPort)
	}
	for kind, list := range map[string]map[string]string{"requests": p.Resources.Requests, "limits": p.Resources.Limits} {
		for name, q := range list {
			if _, err := validate.Quantity(q); err != nil {
				return fmt.Errorf("values: field global.proxy.resources.%s.%s: %w", kind, name, err)
			}
		}
	}
	switch v.Pilot.CNI.Provider {
	case "", "default", "multus":
	default:
		return fmt.Errorf("values: field pilot.cni.provider: %q is not default or multus", v.Pilot.CNI.Provider)
	}
	if v.Global.Hub == "" {
		return errors.New("values: field global.hub: must not be empty")
	}
	return nil
}

// defaultDiscoveryAddress is the default revision's istiod xDS address.
const defaultDiscoveryAddress = "istiod.istio-system.svc:15012"

func loadMesh(user []byte, revision, istioNamespace string) (*meshv1alpha1.MeshConfig, *meshv1alpha1.ProxyConfig, error) {
	def, err := parseMesh(mustDefault("mesh.yaml"))
	if err != nil {
		return nil, nil, fmt.Errorf("default mesh config: %w", err)
	}
	builtin := proto.Clone(def.GetDefaultConfig()).(*meshv1alpha1.ProxyConfig)
	mesh := def
	if len(bytes.TrimSpace(user)) > 0 {
		// Merged as trees, as Istio applies a mesh config over its
		// defaults: every field the user writes wins, false and 0 included
		// (a proto merge would keep a default true over a written false).
		var base, over map[string]any
		if err := yaml.Unmarshal(mustDefault("mesh.yaml"), &base); err != nil {
			return nil, nil, fmt.Errorf("default mesh config: %w", err)
		}
		if err := yaml.Unmarshal(configMapData(user, "mesh"), &over); err != nil {
			return nil, nil, fmt.Errorf("mesh config: %w", err)
		}
		if _, err := parseMesh(configMapData(user, "mesh")); err != nil {
			return nil, nil, fmt.Errorf("mesh config: %w", err)
		}
		mergeValues(base, over)
		merged, err := yaml.Marshal(base)
		if err != nil {
			return nil, nil, fmt.Errorf("mesh config: %w", err)
		}
		if mesh, err = parseMesh(merged); err != nil {
			return nil, nil, fmt.Errorf("mesh config: %w", err)
		}
	}
	if revision != "" && mesh.GetDefaultConfig().GetDiscoveryAddress() == defaultDiscoveryAddress {
		mesh.DefaultConfig.DiscoveryAddress = fmt.Sprintf("istiod-%s.%s.svc:15012", revision, istioNamespace)
	}
	if err := validateMesh(mesh); err != nil {
		return nil, nil, err
	}
	return mesh, builtin, nil
}

func parseMesh(b []byte) (*meshv1alpha1.MeshConfig, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	m := &meshv1alpha1.MeshConfig{}
	if string(bytes.TrimSpace(j)) == "null" {
		return m, nil
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		return nil, protoError(err)
	}
	return m, nil
}

// ParseProxyConfig parses a ProxyConfig in YAML or JSON (the
// proxy.istio.io/config annotation's format).
func ParseProxyConfig(s string) (*meshv1alpha1.ProxyConfig, error) {
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return nil, err
	}
	pc := &meshv1alpha1.ProxyConfig{}
	if err := protojson.Unmarshal(j, pc); err != nil {
		return nil, protoError(err)
	}
	if err := nonNegativeDurations(pc.ProtoReflect(), ""); err != nil {
		return nil, err
	}
	return pc, nil
}

// nonNegativeDurations refuses a negative google.protobuf.Duration
// anywhere in m, naming its field path (JSON names).
func nonNegativeDurations(m protoreflect.Message, prefix string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + fd.JSONName()
		switch {
		case fd.Message() == nil || fd.IsList() || fd.IsMap():
			return true
		case fd.Message().FullName() == "google.protobuf.Duration":
			if d, ok := v.Message().Interface().(*durationpb.Duration); ok && (d.GetSeconds() < 0 || d.GetNanos() < 0) {
				err = fmt.Errorf("field %s: %s is negative", path, d.AsDuration())
				return false
			}
		default:
			err = nonNegativeDurations(v.Message(), path+".")
		}
		return err == nil
	})
	return err
}

// protoError makes a protojson error stable: protojson deliberately varies
// the whitespace in its messages (a space or a non-breaking space) so that
// callers do not match on them; users and golden files need one spelling.
func protoError(err error) error {
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	return errors.New(strings.TrimPrefix(msg, "proto: "))
}

func validateMesh(m *meshv1alpha1.MeshConfig) error {
	dc := m.GetDefaultConfig()
	if dc == nil {
		return errors.New("mesh config: field defaultConfig: must be set")
	}
	if err := nonNegativeDurations(dc.ProtoReflect(), "defaultConfig."); err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	if dc.GetStatusPort() < 0 || dc.GetStatusPort() > 65535 {
		return fmt.Errorf("mesh config: field defaultConfig.statusPort: %d is not in 0-65535", dc.GetStatusPort())
	}
	if m.GetTrustDomain() == "" {
		return errors.New("mesh config: field trustDomain: must not be empty")
	}
	return nil
}

// configKeys are the top-level keys of an injection config; a file with
// none of them is taken as a bare template.
var configKeys = []string{"policy", "defaultTemplates", "templates", "aliases",
	"neverInjectSelector", "alwaysInjectSelector", "injectedAnnotations", "template"}

func loadInjection(user []byte, cfg *Config) error {
	ic := injectionConfig{}
	if err := yaml.Unmarshal(mustDefault("config.yaml"), &ic); err != nil {
		return fmt.Errorf("default injection config: %w", err)
	}
	if len(bytes.TrimSpace(user)) > 0 {
		user = configMapData(user, "config")
		if isBareTemplate(user) {
			ic.Templates = map[string]string{"sidecar": string(user)}
		} else {
			var over struct {
				injectionConfig `json:",inline"`
				// Template is Istio's legacy single-template key, taken as sidecar.
				Template string `json:"template,omitempty"`
			}
			if err := yaml.UnmarshalStrict(user, &over); err != nil {
				return fmt.Errorf("injection config: %w", err)
			}
			if over.Template != "" {
				if over.Templates == nil {
					over.Templates = map[string]string{}
				}
				if _, ok := over.Templates["sidecar"]; !ok {
					over.Templates["sidecar"] = over.Template
				}
			}
			mergeInjection(&ic, &over.injectionConfig)
		}
	}
	all := templates.Builtin()
	for name, text := range ic.Templates {
		all[name] = text
	}
	ic.Templates = all
	if ic.Policy == "" {
		ic.Policy = "enabled"
	}
	if len(ic.DefaultTemplates) == 0 {
		ic.DefaultTemplates = []string{"sidecar"}
	}
	cfg.Injection = ic

	opts := templates.Options{ProxyConfigDefaults: cfg.DefaultProxyConfig}
	cfg.Templates = make(map[string]*template.Template, len(all))
	for _, name := range templates.Names(all) {
		t, err := templates.Compile(name, all[name], opts)
		if err != nil {
			return fmt.Errorf("injection config: %w", err)
		}
		cfg.Templates[name] = t
	}
	for alias, names := range ic.Aliases {
		for _, n := range names {
			if _, ok := cfg.Templates[n]; !ok {
				return fmt.Errorf("injection config: field aliases.%s: template %q not found; have %v", alias, n, templates.Names(cfg.Templates))
			}
		}
	}
	for i, n := range ic.DefaultTemplates {
		if _, ok := cfg.Templates[n]; !ok {
			if _, ok := ic.Aliases[n]; !ok {
				return fmt.Errorf("injection config: field defaultTemplates[%d]: template %q not found; have %v", i, n, templates.Names(cfg.Templates))
			}
		}
	}
	var err error
	if cfg.NeverInject, err = compileSelectors("neverInjectSelector", ic.NeverInjectSelector); err != nil {
		return err
	}
	if cfg.AlwaysInject, err = compileSelectors("alwaysInjectSelector", ic.AlwaysInjectSelector); err != nil {
		return err
	}
	return nil
}

// compileSelectors compiles the label selectors of the injection config's
// field, naming the field and index of a bad one.
func compileSelectors(field string, sels []metav1.LabelSelector) ([]labels.Selector, error) {
	var out []labels.Selector
	for i := range sels {
		sel, err := metav1.LabelSelectorAsSelector(&sels[i])
		if err != nil {
			return nil, fmt.Errorf("injection config: field %s[%d]: %w", field, i, err)
		}
		out = append(out, sel)
	}
	return out, nil
}

func isBareTemplate(b []byte) bool {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return true
	}
	for _, k := range configKeys {
		if _, ok := m[k]; ok {
			return false
		}
	}
	return true
}

func mergeInjection(base, over *injectionConfig) {
	if over.Policy != "" {
		base.Policy = over.Policy
	}
	if len(over.DefaultTemplates) > 0 {
		base.DefaultTemplates = over.DefaultTemplates
	}
	if over.Templates != nil {
		base.Templates = over.Templates
	}
	if over.Aliases != nil {
		base.Aliases = over.Aliases
	}
	if over.NeverInjectSelector != nil {
		base.NeverInjectSelector = over.NeverInjectSelector
	}
	if over.AlwaysInjectSelector != nil {
		base.AlwaysInjectSelector = over.AlwaysInjectSelector
	}
	if over.InjectedAnnotations != nil {
		base.InjectedAnnotations = over.InjectedAnnotations
	}
}
