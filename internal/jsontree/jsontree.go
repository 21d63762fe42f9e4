// Package jsontree converts between typed Kubernetes objects and their JSON
// trees (maps, slices, int64s, float64s, strings, bools, nil), decoding as
// Kubernetes does: case-sensitively, integers kept as int64.
package jsontree

import (
	"encoding/json"
	"fmt"

	kjson "sigs.k8s.io/json"
)

// Tree encodes v (a typed object) and decodes it into a JSON tree, with
// integers kept as int64: the form podcodec.Restore works on.
func Tree(v any) (map[string]any, error) {
	t, err := Value(v)
	if err != nil {
		return nil, err
	}
	m, ok := t.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("jsontree: %T does not encode as a JSON object", v)
	}
	return m, nil
}

// Value encodes v and decodes it into its JSON tree (maps, slices, int64s,
// float64s, strings, bools, nil), whatever JSON value v encodes as.
func Value(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// FromTree decodes a JSON tree (as Value returns) into out, a typed
// object, as Kubernetes decodes: case-sensitively.
func FromTree(tree any, out any) error {
	b, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	return kjson.UnmarshalCaseSensitivePreserveInts(b, out)
}

// Copy returns a deep copy of a JSON tree (maps, slices and scalars).
func Copy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, c := range t {
			m[k] = Copy(c)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, c := range t {
			l[i] = Copy(c)
		}
		return l
	default:
		return v
	}
}
