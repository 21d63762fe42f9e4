package inject

import (
	"encoding/binary"
	"math"
	"reflect"
	"sort"
	"sync"

	"github.com/meshinject/meshinject/templates"
)

// The input-keyed render key is speed code (docs/performance.md, "Speed
// code"): a hit skips executing the template.

// pureTemplates are the built-in templates whose output depends only on
// the inputs renderKey serialises (TestPureTemplatesReadOnlyKeyedInputs
// proves it). While the config keeps the built-in text for a name, its
// parsed output is looked up by that key and the template is not executed;
// any other template is always executed.
var pureTemplates = map[string]bool{"sidecar": true, "gateway": true}

// renderKey appends to b an exact serialisation of everything a pure
// template reads: the exported Settings, the images, NativeSidecars, the
// proxy uid/gid, the pod's tlsMode label and the proxy metadata. Config-wide
// inputs (.Values, .MeshConfig) are fixed for an engine's lifetime.
func renderKey(b []byte, name string, d *templateData) []byte {
	b = appendString(b, name)
	b = appendString(b, d.ProxyImage)
	b = appendString(b, d.ProxyInitImage)
	b = appendValue(b, reflect.ValueOf(d.NativeSidecars))
	b = binary.AppendVarint(b, d.ProxyUID)
	b = binary.AppendVarint(b, d.ProxyGID)
	b = appendString(b, d.ObjectMeta.Labels["security.istio.io/tlsMode"])
	b = appendValue(b, reflect.ValueOf(d.ProxyConfig.GetProxyMetadata()))
	return appendValue(b, reflect.ValueOf(d.Settings).Elem())
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue serialises v unambiguously: every value is prefixed by its
// kind, strings and collections by their length, map entries sorted by key.
func appendValue(b []byte, v reflect.Value) []byte {
	b = append(b, byte(v.Kind())) //nolint:gosec // reflect.Kind values are below 32
	switch v.Kind() {
	case reflect.String:
		return appendString(b, v.String())
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1)
		}
		return append(b, 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(b, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return binary.AppendUvarint(b, v.Uint())
	case reflect.Float32, reflect.Float64:
		return binary.AppendUvarint(b, math.Float64bits(v.Float()))
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(b, 0)
		}
		return appendValue(append(b, 1), v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return append(b, 0)
		}
		b = binary.AppendUvarint(append(b, 1), uint64(v.Len())) //nolint:gosec // lengths are never negative
		for i := range v.Len() {
			b = appendValue(b, v.Index(i))
		}
		return b
	case reflect.Map:
		if v.IsNil() {
			return append(b, 0)
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		b = binary.AppendUvarint(append(b, 1), uint64(len(keys)))
		for _, k := range keys {
			b = appendValue(b, k)
			b = appendValue(b, v.MapIndex(k))
		}
		return b
	case reflect.Struct:
		for _, i := range exportedFields(v.Type()) {
			b = appendValue(b, v.Field(i))
		}
		return b
	}
	// Kinds the inputs never hold (funcs, chans): refuse to key on them.
	panic("inject: renderKey: unsupported kind " + v.Kind().String())
}

// exportedFieldIndexes caches exportedFields per struct type.
var exportedFieldIndexes sync.Map // reflect.Type -> []int

// exportedFields returns the indexes of t's exported fields.
func exportedFields(t reflect.Type) []int {
	if f, ok := exportedFieldIndexes.Load(t); ok {
		return f.([]int)
	}
	var f []int
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			f = append(f, i)
		}
	}
	exportedFieldIndexes.Store(t, f)
	return f
}

// pureNames returns the pure templates whose text in cfg is the built-in.
func pureNames(configured map[string]string) map[string]bool {
	builtin := templates.Builtin()
	out := map[string]bool{}
	for n := range pureTemplates {
		if configured[n] == builtin[n] {
			out[n] = true
		}
	}
	return out
}
