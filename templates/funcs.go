package templates

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
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
// built from opts. Missing map keys render as the zero value, as in Istio.
func Compile(name, text string, opts Options) (*template.Template, error) {
	t, err := template.New(name).Funcs(FuncMap(opts)).Parse(helpers)
	if err != nil {
		return nil, fmt.Errorf("parse template helpers: %w", err)
	}
	t, err = t.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse template %q: %w", name, err)
	}
	return t, nil
}

// FuncMap returns sprig's text functions overlaid with the functions Istio's
// injection templates use, under Istio's names and argument orders.
func FuncMap(opts Options) template.FuncMap {
	f := sprig.TxtFuncMap()
	f["annotation"] = annotation
	f["isset"] = isset
	f["valueOrDefault"] = valueOrDefault
	f["excludeInboundPort"] = ExcludeInboundPort
	f["includeInboundPorts"] = includeInboundPorts
	f["toJSON"] = toJSON
	f["fromJSON"] = fromJSON
	f["structToJSON"] = toJSON
	f["protoToJSON"] = func(m proto.Message) string { return ProtoToJSON(m, opts.ProxyConfigDefaults) }
	f["toYaml"] = toYAML
	f["indent"] = indent
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

// valueOrDefault returns v unless it is nil or the zero value of its type.
func valueOrDefault(v, def any) any {
	if v == nil {
		return def
	}
	rv := reflect.ValueOf(v)
	if rv.IsZero() {
		return def
	}
	if (rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.Len() == 0 {
		return def
	}
	return v
}

// ExcludeInboundPort appends port to the comma-separated list unless the
// port is empty, "0" or already listed.
func ExcludeInboundPort(port any, list string) string {
	p := strings.TrimSpace(fmt.Sprint(port))
	if p == "" || p == "0" {
		return list
	}
	for _, e := range strings.Split(list, ",") {
		if strings.TrimSpace(e) == p {
			return list
		}
	}
	if strings.TrimSpace(list) == "" {
		return p
	}
	return list + "," + p
}

// includeInboundPorts returns the TCP container ports of containers, comma-joined.
func includeInboundPorts(containers []corev1.Container) string {
	var ports []string
	for _, c := range containers {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
			}
		}
	}
	return strings.Join(ports, ",")
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

func fromJSON(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil
	}
	return v
}

func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// indent prefixes every line but the first with spaces spaces.
func indent(spaces int, s string) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", spaces))
}

func omit(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

func strdict(kv ...string) map[string]string {
	out := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func toJSONMap(ms ...map[string]string) string { return toJSON(mergeMaps(ms...)) }

func omitNil(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// AppendMultusNetwork adds network to the value of the Multus
// k8s.v1.cni.cncf.io/networks annotation, which is either a comma-separated
// list of names or a JSON list of objects with a "name" field.
func AppendMultusNetwork(existing, network string) string {
	existing = strings.TrimSpace(existing)
	if existing == "" {
		return network
	}
	if strings.HasPrefix(existing, "[") {
		var list []map[string]any
		if err := json.Unmarshal([]byte(existing), &list); err == nil {
			for _, e := range list {
				if e["name"] == network {
					return existing
				}
			}
			list = append(list, map[string]any{"name": network})
			return toJSON(list)
		}
	}
	for _, n := range strings.Split(existing, ",") {
		if strings.TrimSpace(n) == network {
			return existing
		}
	}
	return existing + ", " + network
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

func formatDuration(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().String()
}

// ProtoToJSON renders m as compact JSON without the fields whose values equal
// those of defaults (when defaults is a message of the same type), so a
// message equal to defaults renders as {}.
func ProtoToJSON(m proto.Message, defaults proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "{}"
	}
	if defaults != nil && defaults.ProtoReflect().Descriptor() == m.ProtoReflect().Descriptor() {
		m = StripDefaults(m, defaults)
	}
	b, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		return "{}"
	}
	// protojson randomises whitespace; compact it for stable output.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "{}"
	}
	return toJSON(v)
}

// StripDefaults returns a copy of m without the populated fields whose values
// equal the same field of defaults.
func StripDefaults(m, defaults proto.Message) proto.Message {
	out := proto.Clone(m)
	r := out.ProtoReflect()
	d := defaults.ProtoReflect()
	var clear []protoreflect.FieldDescriptor
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if d.Has(fd) && d.Get(fd).Equal(v) {
			clear = append(clear, fd)
		}
		return true
	})
	for _, fd := range clear {
		r.Clear(fd)
	}
	return out
}
