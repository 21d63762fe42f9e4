// Package podcodec decodes a pod's JSON into the typed Pod, lets a mutation
// change it, and encodes it again, keeping the JSON faithful across the typed
// round-trip (RoundTrip). Decoding into k8s.io/api types drops fields the vendored types
// do not know (fields of newer Kubernetes versions) and encoding adds fields
// the input never had (creationTimestamp: null, resources: {}). Restore puts
// the former back and takes the latter out, matching list items by identity
// (name, mountPath, containerPort) rather than by index, so a field stays
// with its item even when injection inserts or reorders items.
package podcodec

import (
	"reflect"
	"slices"
)

// Restore edits out, the JSON tree of a mutated typed object, given raw,
// the tree of the input, and known, the tree of the input's unmutated typed
// round-trip:
//   - a field in raw but not in known (unknown to the types) is added to out
//     where out has the same enclosing object and lacks the field;
//   - a field in known but not in raw (invented by encoding) is removed from
//     out where out still holds the invented value.
func Restore(raw, known, out map[string]any) {
	for k, rv := range raw {
		kv, inKnown := known[k]
		ov, inOut := out[k]
		if !inKnown {
			if !inOut {
				out[k] = rv
			}
			continue
		}
		if other, ok := siblingList[k]; ok && !inOut {
			ov, inOut = []any{}, out[other] != nil
		}
		if !inOut {
			continue
		}
		switch r := rv.(type) {
		case map[string]any:
			km, ok1 := kv.(map[string]any)
			om, ok2 := ov.(map[string]any)
			if ok1 && ok2 {
				Restore(r, km, om)
			}
		case []any:
			kl, ok1 := kv.([]any)
			ol, ok2 := ov.([]any)
			if ok1 && ok2 {
				if other, ok := siblingList[k]; ok {
					// A container moved between the two lists (a user's
					// istio-proxy made a native sidecar, and back) keeps its
					// fields; names are unique across both lists.
					more, _ := out[other].([]any)
					ol = append(slices.Clone(ol), more...)
				}
				restoreList(r, kl, ol)
			}
		}
	}
	for k, kv := range known {
		if _, inRaw := raw[k]; inRaw {
			continue
		}
		if ov, ok := out[k]; ok && reflect.DeepEqual(ov, kv) {
			delete(out, k)
		}
	}
	// Items the mutation added carry invented empty fields too.
	for k, ov := range out {
		if _, inRaw := raw[k]; inRaw {
			continue
		}
		if _, inKnown := known[k]; inKnown {
			continue
		}
		Tidy(ov)
	}
}

// siblingList maps each Pod container list to the other one.
var siblingList = map[string]string{"containers": "initContainers", "initContainers": "containers"}

// restoreList pairs the items of raw and known by index (a typed round-trip
// keeps order and length) and finds each pair's item in out by identity.
func restoreList(raw, known, out []any) {
	used := make([]bool, len(out))
	for i, rv := range raw {
		rm, ok := rv.(map[string]any)
		if !ok || i >= len(known) {
			continue
		}
		km, ok := known[i].(map[string]any)
		if !ok {
			continue
		}
		j := find(km, out, used, i, len(raw) == len(out))
		if j < 0 {
			continue
		}
		used[j] = true
		if om, ok := out[j].(map[string]any); ok {
			Restore(rm, km, om)
		}
	}
	for j, ov := range out {
		if !used[j] {
			Tidy(ov)
		}
	}
}

// identityKeys are the fields that identify an item of a Kubernetes list,
// in order of preference.
var identityKeys = []string{"name", "mountPath", "devicePath", "containerPort", "ip", "key", "topologyKey"}

func identity(m map[string]any) (string, any, bool) {
	for _, k := range identityKeys {
		if v, ok := m[k]; ok {
			return k, v, true
		}
	}
	return "", nil, false
}

func find(item map[string]any, out []any, used []bool, index int, sameLength bool) int {
	key, val, ok := identity(item)
	if !ok {
		if sameLength && index < len(out) && !used[index] {
			return index
		}
		return -1
	}
	for j, ov := range out {
		if used[j] {
			continue
		}
		if om, ok := ov.(map[string]any); ok && reflect.DeepEqual(om[key], val) {
			return j
		}
	}
	return -1
}

// Tidy removes from v, a JSON tree, recursively, what encoding Go structs
// writes for unset fields (Invented), so values read as a person would
// write them; the API server reads both forms alike.
func Tidy(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if Invented(k, c) {
				delete(t, k)
				continue
			}
			Tidy(c)
		}
	case []any:
		for _, c := range t {
			Tidy(c)
		}
	}
}

// Invented reports whether a member named key holding v (a JSON tree) is
// what encoding a typed Kubernetes object writes for a field left unset,
// which the API server reads as unset: null (nil pointers without
// omitempty: creationTimestamp, grpc.service), an empty resources or
// status object, and a divisor of "0".
func Invented(key string, v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0 && (key == "resources" || key == "status")
	case string:
		return key == "divisor" && t == "0"
	}
	return false
}
