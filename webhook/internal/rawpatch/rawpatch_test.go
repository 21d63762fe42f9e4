package rawpatch

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// check diffs a and b, applies the patch to a with evanphx/json-patch and
// asserts the result equals b; it returns the operations.
func check(t testing.TB, a, b string) []Operation {
	t.Helper()
	ops, err := Diff([]byte(a), []byte(b))
	if err != nil {
		t.Fatalf("Diff(%s, %s): %v", a, b, err)
	}
	doc, err := Marshal(ops)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !json.Valid(doc) {
		t.Fatalf("Marshal produced invalid JSON: %s", doc)
	}
	p, err := jsonpatch.DecodePatch(doc)
	if err != nil {
		t.Fatalf("decode patch %s: %v", doc, err)
	}
	got, err := p.Apply([]byte(a))
	if err != nil {
		t.Fatalf("apply %s to %s: %v", doc, a, err)
	}
	if !jsonpatch.Equal(got, []byte(b)) {
		t.Fatalf("patch %s turns\n%s\ninto\n%s\nwant\n%s", doc, a, got, b)
	}
	return ops
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       string // the patch, as Marshal encodes it
	}{
		{"equal", `{"a":1}`, `{"a":1}`, `[]`},
		{"add member", `{"a":1}`, `{"a":1,"b":{"c":2}}`, `[{"op":"add","path":"/b","value":{"c":2}}]`},
		{"remove member", `{"a":1,"b":2}`, `{"b":2}`, `[{"op":"remove","path":"/a"}]`},
		{"replace scalar", `{"a":1}`, `{"a":"x"}`, `[{"op":"replace","path":"/a","value":"x"}]`},
		{"replace kind", `{"a":[1]}`, `{"a":{"b":1}}`, `[{"op":"replace","path":"/a","value":{"b":1}}]`},
		{"nested", `{"m":{"l":{"x":"1"}}}`, `{"m":{"l":{"x":"1","y":"2"}}}`, `[{"op":"add","path":"/m/l/y","value":"2"}]`},
		{"escaped names", `{"a/b":1,"c~d":2}`, `{"a/b":3,"c~d":2,"e/f~":4}`,
			`[{"op":"replace","path":"/a~1b","value":3},{"op":"add","path":"/e~1f~0","value":4}]`},
		{"insert at front", `{"v":[{"n":"a"},{"n":"b"}]}`, `{"v":[{"n":"x"},{"n":"y"},{"n":"a"},{"n":"b"}]}`,
			`[{"op":"add","path":"/v/0","value":{"n":"x"}},{"op":"add","path":"/v/1","value":{"n":"y"}}]`},
		{"append", `[1,2]`, `[1,2,3]`, `[{"op":"add","path":"/2","value":3}]`},
		{"insert in the middle", `[1,2,3]`, `[1,9,2,3]`, `[{"op":"add","path":"/1","value":9}]`},
		{"remove from the middle", `[1,2,3,4]`, `[1,4]`, `[{"op":"remove","path":"/1"},{"op":"remove","path":"/1"}]`},
		{"modified element", `[{"n":"a","p":1},{"n":"b"}]`, `[{"n":"a","p":2},{"n":"b"}]`,
			`[{"op":"replace","path":"/0/p","value":2}]`},
		{"modified and inserted", `[{"n":"a","p":1},{"n":"b"}]`, `[{"n":"i"},{"n":"a","p":2},{"n":"b"},{"n":"z"}]`,
			`[{"op":"replace","path":"/0/n","value":"i"},{"op":"remove","path":"/0/p"},{"op":"add","path":"/1","value":{"n":"a","p":2}},{"op":"add","path":"/3","value":{"n":"z"}}]`},
		{"whitespace only", " {\"a\" : [ 1 , 2 ] }\n", `{"a":[1,2]}`, `[]`},
		{"empty to full", `{}`, `{"a":[],"b":null}`, `[{"op":"add","path":"/a","value":[]},{"op":"add","path":"/b","value":null}]`},
		{"full to empty array", `{"a":[1,2]}`, `{"a":[]}`, `[{"op":"remove","path":"/a/0"},{"op":"remove","path":"/a/0"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := check(t, tt.a, tt.b)
			got, err := Marshal(ops)
			if err != nil {
				t.Fatal(err)
			}
			if ops == nil {
				got = []byte(`[]`)
			}
			if string(got) != tt.want {
				t.Errorf("patch\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDiffErrors(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{`{"a":1}`, `{"a":}`},
		{`{"a":[1,2}`, `{"a":[1]}`},
		{``, `{}`},
		{`{"a":1,}`, `{}`},
		{`[1 2]`, `[]`},
		{`{"a" 1}`, `{}`},
		{`{"a":"x}`, `{}`},
		{`{"a":1}}`, `{}`},
		{`{"a":1]`, `{}`},
		{`{}`, `{"a":{}`},
		{`{"a":{"b":1}}`, `{"a":{"b" 2}}`},
		{`{"a":[1]}`, `{"a":[1 2]}`},
		{`{"a":{"b":[1,]}}`, `{"a":{"b":[2]}}`},
	} {
		if ops, err := Diff([]byte(tt.a), []byte(tt.b)); err == nil {
			t.Errorf("Diff(%q, %q) = %v, want an error", tt.a, tt.b, ops)
		}
	}
}

// TestDiffArrays applies diffs between every pair of arrays drawn from a
// small alphabet, including repeated items, where alignment goes wrong
// first.
func TestDiffArrays(t *testing.T) {
	var arrays []string
	var gen func(prefix []int, n int)
	gen = func(prefix []int, n int) {
		b, _ := json.Marshal(prefix)
		arrays = append(arrays, string(b))
		if n == 0 {
			return
		}
		for v := range 3 {
			gen(append(prefix[:len(prefix):len(prefix)], v), n-1)
		}
	}
	gen([]int{}, 4)
	for _, a := range arrays {
		for _, b := range arrays {
			check(t, fmt.Sprintf(`{"x":%s}`, a), fmt.Sprintf(`{"x":%s}`, b))
		}
	}
}

func FuzzDiff(f *testing.F) {
	f.Add(`{"a":[1,{"b":2}],"c":"d"}`, `{"a":[0,1,{"b":3}],"e":null}`)
	f.Add(`{"x":[1,2,3]}`, `{"x":[3,2,1]}`)
	f.Add(`{"a/b~":{}}`, `{"a/b~":{"c":[]}}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		// Any input: an error or a patch, never a panic.
		_, _ = Diff([]byte(a), []byte(b))
		// Documents are objects: pods are, and patch appliers expect one.
		var va, vb map[string]any
		if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil || va == nil || vb == nil {
			return
		}
		// evanphx/json-patch cannot address the empty member name (pointer
		// "/"), which Kubernetes objects never have.
		if hasEmptyName(va) || hasEmptyName(vb) {
			return
		}
		// Duplicate names are ambiguous for any patch applier.
		ca, _ := json.Marshal(va)
		cb, _ := json.Marshal(vb)
		check(t, string(ca), string(cb))
	})
}

func hasEmptyName(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "" || hasEmptyName(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasEmptyName(x) {
				return true
			}
		}
	}
	return false
}

// TestScanString compares the word-at-a-time string scanner with a byte
// loop on strings of quotes, backslashes and letters of every length and
// alignment.
func TestScanString(t *testing.T) {
	ref := func(raw []byte, i int) (int, bool) {
		for j := i + 1; j < len(raw); j++ {
			switch raw[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, 1+r.IntN(40))
		b[0] = '"'
		for k := 1; k < len(b); k++ {
			b[k] = `ab"\é`[r.IntN(5)]
		}
		want, ok := ref(b, 0)
		got, err := scanString(b, 0)
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("scanString(%q) = %d, %v; want %d, %v", b, got, err, want, ok)
		}
	}
}

// TestDiffLarge: past smallObject members and past lcsBudget cells the
// patch is still correct (the oracle applies it), and an array whose
// middle is too large to align is patched item by item, not replaced.
func TestDiffLarge(t *testing.T) {
	t.Parallel()
	obj := func(n, changed int, extra string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			v := "v"
			if i%changed == 0 {
				v = "w"
			}
			fmt.Fprintf(&b, `"k%d":%q,`, (i*7919)%n, v)
		}
		b.WriteString(extra + `"last":0}`)
		return b.String()
	}
	if ops := check(t, obj(1000, 1000, ""), obj(1000, 250, `"new":1,`)); len(ops) != 4 {
		t.Errorf("1000-member objects, 3 changed and 1 added: %d operations, want 4", len(ops))
	}
	arr := func(n int, tag string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"name":"c%d","v":%q}`, i, tag)
		}
		return `{"a":[{"keep":1},` + strings.Join(items, ",") + `,{"keep":2}]}`
	}
	n := 1000 // 1000×1000 cells, past the budget
	ops := check(t, arr(n, "x"), arr(n, "y"))
	if len(ops) != n {
		t.Errorf("%d items changed in place: %d operations, want one each", n, len(ops))
	}
	for _, op := range ops {
		if op.Op != "replace" || !strings.HasSuffix(op.Path, "/v") {
			t.Fatalf("operation %s %s, want replaces of each item's v", op.Op, op.Path)
		}
	}
}
