package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Options configures the function map. The zero value is usable.
type Options struct {
	// ProxyConfigDefaults is the ProxyConfig whose field values protoToJSON
	// leaves out, so that a ProxyConfig equal to it renders as {}. Nil means
	// no field is left out.
	ProxyConfigDefaults proto.Message
}

// Compile parses text as the template called name with the function map
// built from opts. A missing map key renders as "<no value>", as in Istio
// (text/template's default).
func Compile(name, text string, opts Options) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcMap(opts)).Parse(helpers)
	if err != nil {
		return nil, fmt.Errorf("parse template helpers: %w", err)
	}
	t, err = t.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse template %q: %w", name, err)
	}
	return t, nil
}

// funcMap returns sprig's text functions overlaid with the functions Istio's
// injection templates use, under Istio's names, argument orders and
// semantics (istio.io/istio pkg/kube/inject's template function map).
func funcMap(opts Options) template.FuncMap {
	f := sprig.TxtFuncMap()
	f["annotation"] = annotation
	f["isset"] = isset
	f["valueOrDefault"] = valueOrDefault
	f["excludeInboundPort"] = ExcludeInboundPort
	f["includeInboundPorts"] = includeInboundPorts
	f["applicationPorts"] = applicationPorts
	f["kubevirtInterfaces"] = identity
	f["excludeInterfaces"] = identity
	f["toJSON"] = toJSON
	f["fromJSON"] = fromJSON
	f["structToJSON"] = structToJSON
	f["protoToJSON"] = func(m proto.Message) string { return ProtoToJSON(m, opts.ProxyConfigDefaults) }
	f["toYaml"] = toYAML
	f["indent"] = indent
	f["directory"] = directory
	f["contains"] = func(needle, haystack string) bool { return strings.Contains(haystack, needle) }
	f["toLower"] = strings.ToLower
	f["omit"] = omit
	f["strdict"] = strdict
	f["toJsonMap"] = toJSONMap
	f["mergeMaps"] = mergeMaps
	f["omitNil"] = omitNil
	f["appendMultusNetwork"] = AppendMultusNetwork
	f["env"] = env
	f["formatDuration"] = formatDuration
	f["otelResourceAttributes"] = OtelResourceAttributes
	return f
}

// annotation returns the annotation name of meta, or def when it is absent.
func annotation(meta metav1.ObjectMeta, name string, def any) string {
	if v, ok := meta.Annotations[name]; ok {
		return v
	}
	return fmt.Sprint(def)
}

func isset(m map[string]string, key string) bool {
	_, ok := m[key]
	return ok
}

// valueOrDefault returns v unless it is nil or the empty string.
func valueOrDefault(v, def any) any {
	if v == nil || v == "" {
		return def
	}
	return v
}

// ExcludeInboundPort appends port to the comma-separated list unless the
// port is empty, "0" or already listed; the list is returned with its
// empty items dropped and the rest trimmed.
func ExcludeInboundPort(port any, list string) string {
	p := strings.TrimSpace(fmt.Sprint(port))
	if p == "" || p == "0" {
		return list
	}
	var out []string
	for _, e := range strings.Split(list, ",") {
		if e == p {
			return list
		}
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(append(out, p), ",")
}

// includeInboundPorts returns the container ports of containers that are
// not UDP or SCTP, comma-joined.
func includeInboundPorts(containers []corev1.Container) string {
	return containerPorts(containers, "")
}

// applicationPorts is includeInboundPorts without the istio-proxy container.
func applicationPorts(containers []corev1.Container) string {
	return containerPorts(containers, "istio-proxy")
}

func containerPorts(containers []corev1.Container, skip string) string {
	var ports []string
	for _, c := range containers {
		if skip != "" && c.Name == skip {
			continue
		}
		for _, p := range c.Ports {
			if p.Protocol != corev1.ProtocolUDP && p.Protocol != corev1.ProtocolSCTP {
				ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
			}
		}
	}
	return strings.Join(ports, ",")
}

func identity(s string) string { return s }

// directory returns the directory part of a slash-separated path, with its
// trailing slash ("" when there is none).
func directory(p string) string {
	dir, _ := path.Split(p)
	return dir
}

// toJSON encodes v; a nil map or an unencodable value is "{}".
func toJSON(v any) string {
	if m, ok := v.(map[string]string); ok && m == nil {
		return "{}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

func structToJSON(v any) string {
	if v == nil {
		return "{}"
	}
	return toJSON(v)
}

// fromJSON decodes s; text that is not JSON gives the string "{}".
func fromJSON(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "{}"
	}
	return v
}

// toYAML encodes v as YAML, with its trailing newline.
func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// indent prefixes every line but the first with spaces spaces.
func indent(spaces int, s string) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", spaces))
}

func omit(m map[string]string, keys ...string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if !slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}

// strdict builds a map[string]string from key, value pairs; a key without
// a value maps to "".
func strdict(kv ...string) map[string]string {
	out := make(map[string]string, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		if i+1 < len(kv) {
			out[kv[i]] = kv[i+1]
		} else {
			out[kv[i]] = ""
		}
	}
	return out
}

// mergeMaps merges maps, later ones winning; no maps gives nil.
func mergeMaps(ms ...map[string]string) map[string]string {
	if len(ms) == 0 {
		return nil
	}
	out := make(map[string]string, len(ms[0]))
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

func toJSONMap(ms ...map[string]string) string {
	b, err := json.Marshal(mergeMaps(ms...))
	if err != nil {
		return ""
	}
	return string(b)
}

// omitNil removes nil values from maps and lists, recursively; a map or
// list left empty by that becomes nil itself.
func omitNil(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if !hasNil(t) {
			return t
		}
		out := make(map[string]any, len(t))
		for k, c := range t {
			if c = omitNil(c); c != nil {
				out[k] = c
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if !hasNil(t) {
			return t
		}
		out := make([]any, 0, len(t))
		for _, c := range t {
			if c = omitNil(c); c != nil {
				out = append(out, c)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return v
}

// hasNil reports whether omitNil would change v.
func hasNil(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, c := range t {
			if hasNil(c) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if hasNil(c) {
				return true
			}
		}
	}
	return false
}

// AppendMultusNetwork adds network (a name or namespace/name) to the value
// of the Multus k8s.v1.cni.cncf.io/networks annotation: a JSON list of
// objects gets {"name": ..., "namespace": ...} before its closing bracket,
// a comma-separated list gets ", network". A value that already names the
// network, or JSON that does not parse, is returned as it is.
func AppendMultusNetwork(existing, network string) string {
	if existing == "" {
		return network
	}
	ns, name := "", network
	if i := strings.Index(network, "/"); i >= 0 {
		ns, name = network[:i], network[i+1:]
	}
	if i := strings.LastIndex(existing, "]"); i >= 0 {
		var list []map[string]any
		if err := json.Unmarshal([]byte(existing), &list); err != nil {
			return existing
		}
		for _, e := range list {
			ens, _ := e["namespace"].(string)
			if e["name"] == name && ens == ns {
				return existing
			}
		}
		item := fmt.Sprintf(`, {"name": %q}`, name)
		if ns != "" {
			item = fmt.Sprintf(`, {"name": %q, "namespace": %q}`, name, ns)
		}
		return existing[:i] + item + existing[i:]
	}
	for _, n := range strings.Split(existing, ",") {
		if strings.TrimSpace(n) == network {
			return existing
		}
	}
	return existing + ", " + network
}

// env returns the process environment variable key, or def when it is
// unset or empty.
func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// formatDuration formats d as Go does; nil is "0s".
func formatDuration(d *durationpb.Duration) string {
	return d.AsDuration().String()
}

// cleanedProxyConfigFields are the ProxyConfig fields that protoToJSON
// leaves out when they equal the defaults, as Istio's injector does: the
// ones every proxy gets anyway. Other fields are written even when they
// equal a default.
var cleanedProxyConfigFields = []protoreflect.Name{
	"config_path", "binary_path", "control_plane_auth_policy", "service_cluster",
	"drain_duration", "termination_drain_duration", "discovery_address",
	"envoy_metrics_service", "envoy_access_log_service", "tracing",
	"proxy_admin_port", "stat_name_length", "status_port", "concurrency",
}

// ProtoToJSON renders m as compact JSON in field declaration order. When
// defaults is a message of the same type, the fields of
// cleanedProxyConfigFields that equal it (set or unset alike) are left out.
func ProtoToJSON(m proto.Message, defaults proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "{}"
	}
	if defaults != nil && defaults.ProtoReflect().Descriptor() == m.ProtoReflect().Descriptor() {
		m = stripDefaults(m, defaults)
	}
	b, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		return "{}"
	}
	// protojson randomises whitespace; compact it for stable output.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return "{}"
	}
	return out.String()
}

// stripDefaults returns a copy of m without the cleanedProxyConfigFields
// whose values equal the same field of defaults.
func stripDefaults(m, defaults proto.Message) proto.Message {
	out := proto.Clone(m)
	r := out.ProtoReflect()
	d := defaults.ProtoReflect()
	fields := r.Descriptor().Fields()
	for _, name := range cleanedProxyConfigFields {
		fd := fields.ByName(name)
		if fd == nil {
			continue
		}
		if r.Has(fd) == d.Has(fd) && (!r.Has(fd) || r.Get(fd).Equal(d.Get(fd))) {
			r.Clear(fd)
		}
	}
	return out
}
