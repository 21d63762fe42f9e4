package podcodec

import (
	"encoding/json"
	"reflect"
	"testing"
)

func tree(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRestore(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ raw, known, out, want string }{
		"unknown field re-added": {
			raw: `{"spec":{"new":1,"a":1}}`, known: `{"spec":{"a":1}}`,
			out: `{"spec":{"a":2}}`, want: `{"spec":{"a":2,"new":1}}`,
		},
		"unknown field follows its item when the list shifts": {
			raw:   `{"items":[{"name":"x","new":"x"},{"name":"y","new":"y"}]}`,
			known: `{"items":[{"name":"x"},{"name":"y"}]}`,
			out:   `{"items":[{"name":"added"},{"name":"x"},{"name":"y"}]}`,
			want:  `{"items":[{"name":"added"},{"name":"x","new":"x"},{"name":"y","new":"y"}]}`,
		},
		"removed item loses its unknown field": {
			raw: `{"items":[{"name":"x","new":1}]}`, known: `{"items":[{"name":"x"}]}`,
			out: `{"items":[]}`, want: `{"items":[]}`,
		},
		"invented fields dropped": {
			raw: `{"metadata":{"name":"p"}}`, known: `{"metadata":{"name":"p","creationTimestamp":null},"status":{}}`,
			out: `{"metadata":{"name":"p","creationTimestamp":null},"status":{}}`, want: `{"metadata":{"name":"p"}}`,
		},
		"changed invented field kept": {
			raw: `{"a":1}`, known: `{"a":1,"b":{}}`, out: `{"a":1,"b":{"x":1}}`, want: `{"a":1,"b":{"x":1}}`,
		},
		"added item pruned of empties": {
			raw: `{"items":[]}`, known: `{"items":[]}`,
			out: `{"items":[{"name":"n","resources":{},"x":null,"keep":{}}]}`, want: `{"items":[{"name":"n","keep":{}}]}`,
		},
		"mountPath identity": {
			raw:   `{"m":[{"mountPath":"/a","new":1}]}`,
			known: `{"m":[{"mountPath":"/a"}]}`,
			out:   `{"m":[{"mountPath":"/b"},{"mountPath":"/a"}]}`,
			want:  `{"m":[{"mountPath":"/b"},{"mountPath":"/a","new":1}]}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := tree(t, tc.out)
			Restore(tree(t, tc.raw), tree(t, tc.known), out)
			if want := tree(t, tc.want); !reflect.DeepEqual(out, want) {
				got, _ := json.Marshal(out)
				t.Errorf("Restore = %s, want %s", got, tc.want)
			}
		})
	}
}
