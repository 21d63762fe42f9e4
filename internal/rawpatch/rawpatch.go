// Package rawpatch computes RFC 6902 JSON patches between two encoded JSON
// documents without decoding them into trees.
//
// Each document is indexed in one pass over its bytes (the span of every
// value, no decoded values), then both are walked together, descending only
// where their bytes differ: a subtree that is byte-identical on both sides
// costs one comparison. Array elements are aligned by byte equality (longest
// common subsequence), so inserting items before existing ones yields "add"
// operations rather than a cascade of "replace"s. Values in the patch are
// the exact bytes of the new document.
//
// The patch is correct for any pair of documents (applying it to the first
// yields a document equal to the second); it is minimal for the kind of
// change an admission webhook makes: fields and array items added, a few
// values changed.
package rawpatch

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// Operation is one RFC 6902 operation. Value holds the encoded JSON value
// of add and replace operations and is nil for remove.
type Operation struct {
	Op    string
	Path  string
	Value []byte
}

// Diff returns the operations that turn document a into document b.
func Diff(a, b []byte) ([]Operation, error) {
	d := differs.Get().(*differ)
	defer d.release()
	var err error
	if d.a.nodes, err = index(a, d.a.nodes[:0]); err != nil {
		return nil, fmt.Errorf("rawpatch: first document: %w", err)
	}
	if d.b.nodes, err = index(b, d.b.nodes[:0]); err != nil {
		return nil, fmt.Errorf("rawpatch: second document: %w", err)
	}
	d.a.raw, d.b.raw = a, b
	d.value("", 0, 0)
	return d.ops, nil
}

// Marshal encodes ops as a JSON patch document.
func Marshal(ops []Operation) ([]byte, error) {
	n := 2
	for _, op := range ops {
		n += len(op.Path) + len(op.Value) + 40
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, op := range ops {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"op":"`...)
		out = append(out, op.Op...)
		out = append(out, `","path":`...)
		var err error
		if out, err = jsontext.AppendQuote(out, op.Path); err != nil {
			return nil, fmt.Errorf("operation %d: path %q: %w", i, op.Path, err)
		}
		if op.Op != "remove" {
			out = append(out, `,"value":`...)
			out = append(out, op.Value...)
		}
		out = append(out, '}')
	}
	return append(out, ']'), nil
}

// node is one value of an indexed document: its span in the document,
// its member name's span (quotes included) when it is an object member, and
// links to its first child and next sibling (-1 for none).
type node struct {
	start, end         int
	nameStart, nameEnd int
	first, next        int
	kind               byte // '{', '[' or the first byte of a scalar
}

// doc is a document and the index of its values; nodes[0] is the root.
type doc struct {
	raw   []byte
	nodes []node
}

func (d *doc) bytes(n int) []byte { return d.raw[d.nodes[n].start:d.nodes[n].end] }

func (d *doc) name(n int) []byte { return d.raw[d.nodes[n].nameStart:d.nodes[n].nameEnd] }

// children appends the indexes of n's children to dst.
func (d *doc) children(dst []int, n int) []int {
	for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
		dst = append(dst, c)
	}
	return dst
}

// index appends the nodes of raw to nodes in one pass over the bytes. It
// checks structure (nesting, names, separators) and reports where it
// breaks, but not the contents of strings and numbers: the documents come
// from JSON encoders or were decoded successfully already.
func index(raw []byte, nodes []node) ([]node, error) {
	type open struct{ node, last int }
	var stack [16]open
	parents := stack[:0]
	link := func(n int) {
		if len(parents) == 0 {
			return
		}
		p := &parents[len(parents)-1]
		if p.last < 0 {
			nodes[p.node].first = n
		} else {
			nodes[p.last].next = n
		}
		p.last = n
	}
	nameStart, nameEnd := -1, -1
	i := skipSpace(raw, 0)
	for {
		if i >= len(raw) {
			return nil, io.ErrUnexpectedEOF
		}
		c := raw[i]
		inObject := len(parents) > 0 && nodes[parents[len(parents)-1].node].kind == '{'
		if inObject && nameStart < 0 && c != '}' {
			end, err := scanString(raw, i)
			if err != nil {
				return nil, fmt.Errorf("member name: %w", err)
			}
			nameStart, nameEnd = i, end
			if i = skipSpace(raw, end); i >= len(raw) || raw[i] != ':' {
				return nil, fmt.Errorf("offset %d: want ':' after a member name", i)
			}
			i = skipSpace(raw, i+1)
			continue
		}
		var end int
		switch c {
		case '{', '[':
			n := len(nodes)
			nodes = append(nodes, node{start: i, nameStart: nameStart, nameEnd: nameEnd, first: -1, next: -1, kind: c})
			link(n)
			parents = append(parents, open{node: n, last: -1})
			nameStart, nameEnd = -1, -1
			i = skipSpace(raw, i+1)
			continue
		case '}', ']':
			if len(parents) == 0 || nameStart >= 0 || (c == '}') != (nodes[parents[len(parents)-1].node].kind == '{') {
				return nil, fmt.Errorf("offset %d: unexpected %q", i, c)
			}
			end = i + 1
			nodes[parents[len(parents)-1].node].end = end
			parents = parents[:len(parents)-1]
		default:
			var err error
			if end, err = scanScalar(raw, i); err != nil {
				return nil, err
			}
			n := len(nodes)
			nodes = append(nodes, node{start: i, end: end, nameStart: nameStart, nameEnd: nameEnd, first: -1, next: -1, kind: c})
			link(n)
		}
		nameStart, nameEnd = -1, -1
		i = skipSpace(raw, end)
		if len(parents) == 0 {
			if i != len(raw) {
				return nil, fmt.Errorf("offset %d: data after the top-level value", i)
			}
			return nodes, nil
		}
		// After a value inside an object or array: a separator, or the end
		// of the container.
		switch {
		case i >= len(raw):
			return nil, io.ErrUnexpectedEOF
		case raw[i] == ',':
			if i = skipSpace(raw, i+1); i < len(raw) && (raw[i] == '}' || raw[i] == ']') {
				return nil, fmt.Errorf("offset %d: trailing comma", i)
			}
		case raw[i] != '}' && raw[i] != ']':
			return nil, fmt.Errorf("offset %d: want ',' or the end of the container, got %q", i, raw[i])
		}
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\t' || raw[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the offset after the string starting at raw[i].
func scanString(raw []byte, i int) (int, error) {
	if i >= len(raw) || raw[i] != '"' {
		return 0, fmt.Errorf("offset %d: want a string", i)
	}
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("offset %d: unterminated string", i)
}

// scanScalar returns the offset after the string, number or literal
// starting at raw[i].
func scanScalar(raw []byte, i int) (int, error) {
	c := raw[i]
	if c == '"' {
		return scanString(raw, i)
	}
	if c != '-' && (c < '0' || c > '9') && c != 't' && c != 'f' && c != 'n' {
		return 0, fmt.Errorf("offset %d: unexpected %q", i, c)
	}
	j := i + 1
	for j < len(raw) {
		switch raw[j] {
		case ',', '}', ']', ' ', '\n', '\t', '\r':
			return j, nil
		case '"', '{', '[', ':':
			return 0, fmt.Errorf("offset %d: unexpected %q", j, raw[j])
		}
		j++
	}
	return j, nil
}

type differ struct {
	a, b   doc
	ops    []Operation
	ai, bi []int // scratch for array children
}

var differs = sync.Pool{New: func() any { return new(differ) }}

// release returns d to the pool; the operations it made belong to the
// caller.
func (d *differ) release() {
	d.a.raw, d.b.raw, d.ops = nil, nil, nil
	differs.Put(d)
}

func (d *differ) add(op, path string, value []byte) {
	d.ops = append(d.ops, Operation{Op: op, Path: path, Value: value})
}

// value diffs node x of a and node y of b, found at path.
func (d *differ) value(path string, x, y int) {
	if bytes.Equal(d.a.bytes(x), d.b.bytes(y)) {
		return
	}
	switch ka, kb := d.a.nodes[x].kind, d.b.nodes[y].kind; {
	case ka == '{' && kb == '{':
		d.object(path, x, y)
	case ka == '[' && kb == '[':
		d.array(path, x, y)
	default:
		d.add("replace", path, d.b.bytes(y))
	}
}

func (d *differ) object(path string, x, y int) {
	// Objects are small; a linear search keeps the order of both
	// documents and allocates nothing.
	for c := d.a.nodes[x].first; c >= 0; c = d.a.nodes[c].next {
		if m := d.findB(y, d.a.name(c)); m >= 0 {
			d.value(path+"/"+d.member(d.a.name(c)), c, m)
			continue
		}
		d.add("remove", path+"/"+d.member(d.a.name(c)), nil)
	}
	for m := d.b.nodes[y].first; m >= 0; m = d.b.nodes[m].next {
		if d.findA(x, d.b.name(m)) < 0 {
			d.add("add", path+"/"+d.member(d.b.name(m)), d.b.bytes(m))
		}
	}
}

func (d *differ) findA(x int, name []byte) int {
	for c := d.a.nodes[x].first; c >= 0; c = d.a.nodes[c].next {
		if bytes.Equal(d.a.name(c), name) {
			return c
		}
	}
	return -1
}

func (d *differ) findB(y int, name []byte) int {
	for c := d.b.nodes[y].first; c >= 0; c = d.b.nodes[c].next {
		if bytes.Equal(d.b.name(c), name) {
			return c
		}
	}
	return -1
}

// member is the JSON pointer reference token of a quoted member name.
func (d *differ) member(quoted []byte) string {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		if u, err := jsontext.AppendUnquote(nil, quoted); err == nil {
			name = u
		}
	}
	return escape(string(name))
}

func (d *differ) array(path string, x, y int) {
	// The scratch slices are shared by nested arrays: take this level's
	// children off their ends and give the space back afterwards.
	na, nb := len(d.ai), len(d.bi)
	d.ai, d.bi = d.a.children(d.ai, x), d.b.children(d.bi, y)
	ae, be := d.ai[na:], d.bi[nb:]
	// Walk the longest common subsequence of byte-equal elements; between
	// two matches, pair the unmatched elements of both sides (diffed in
	// place), then remove or add the rest. idx is the position in the array
	// as the operations so far have left it.
	i, j, idx := 0, 0, 0
	for _, m := range d.lcs(ae, be) {
		idx = d.gap(path, ae[i:m[0]], be[j:m[1]], idx)
		i, j, idx = m[0]+1, m[1]+1, idx+1
	}
	d.gap(path, ae[i:], be[j:], idx)
	d.ai, d.bi = d.ai[:na], d.bi[:nb]
}

// gap emits the operations for a run of unmatched elements starting at
// index idx and returns the index after the run.
func (d *differ) gap(path string, a, b []int, idx int) int {
	paired := min(len(a), len(b))
	for k := range paired {
		d.value(path+"/"+strconv.Itoa(idx), a[k], b[k])
		idx++
	}
	for range a[paired:] {
		d.add("remove", path+"/"+strconv.Itoa(idx), nil)
	}
	for _, v := range b[paired:] {
		d.add("add", path+"/"+strconv.Itoa(idx), d.b.bytes(v))
		idx++
	}
	return idx
}

// lcs returns the index pairs of a longest common subsequence of byte-equal
// elements, in order.
func (d *differ) lcs(a, b []int) [][2]int {
	eq := func(x, y int) bool { return bytes.Equal(d.a.bytes(x), d.b.bytes(y)) }
	// Common prefix and suffix first: the usual case is items inserted at
	// one end, which needs no table at all.
	var out [][2]int
	p := 0
	for p < len(a) && p < len(b) && eq(a[p], b[p]) {
		out = append(out, [2]int{p, p})
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && eq(a[len(a)-1-s], b[len(b)-1-s]) {
		s++
	}
	ma, mb := a[p:len(a)-s], b[p:len(b)-s]
	if len(ma) > 0 && len(mb) > 0 {
		// Classic dynamic programme over the middle; admission arrays have
		// tens of items at most.
		w := len(mb) + 1
		t := make([]int, (len(ma)+1)*w)
		for x := len(ma) - 1; x >= 0; x-- {
			for y := len(mb) - 1; y >= 0; y-- {
				if eq(ma[x], mb[y]) {
					t[x*w+y] = t[(x+1)*w+y+1] + 1
				} else {
					t[x*w+y] = max(t[(x+1)*w+y], t[x*w+y+1])
				}
			}
		}
		for x, y := 0, 0; x < len(ma) && y < len(mb); {
			switch {
			case eq(ma[x], mb[y]):
				out = append(out, [2]int{p + x, p + y})
				x, y = x+1, y+1
			case t[(x+1)*w+y] >= t[x*w+y+1]:
				x++
			default:
				y++
			}
		}
	}
	for k := s; k > 0; k-- {
		out = append(out, [2]int{len(a) - k, len(b) - k})
	}
	return out
}

// escape encodes an object member name as a JSON pointer reference token.
func escape(name string) string {
	if !strings.ContainsAny(name, "~/") {
		return name
	}
	return pointerEscaper.Replace(name)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
