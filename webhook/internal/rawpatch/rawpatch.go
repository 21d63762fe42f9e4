// Package rawpatch computes RFC 6902 JSON patches between two encoded JSON
// documents without decoding them into trees. It is speed code (its
// figure: docs/performance.md, "Speed code").
//
// Each document is scanned once to pair its brackets; then both are walked
// together, descending only where their bytes differ: a subtree that is
// byte-identical on both sides costs one comparison, and the members or
// elements of a value are located only when the walk descends into it, by
// reading that one level and jumping over nested containers. Array elements
// are aligned by byte equality (longest common subsequence), so inserting
// items before existing ones yields "add" operations rather than a cascade
// of "replace"s. Values in the patch are the exact bytes of the new
// document.
//
// The patch is correct for any pair of documents (applying it to the first
// yields a document equal to the second); it is minimal for the kind of
// change an admission webhook makes: fields and array items added, a few
// values changed.
//
// The documents are expected to be valid JSON (encoder output, or input
// decoded successfully already). Diff reports the offset where the
// structure breaks (brackets and strings everywhere; names, colons and
// commas where the walk descends) and never panics, but it does not
// validate regions that are byte-identical in both documents, nor the
// contents of strings and numbers.
package rawpatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"math/bits"
	"slices"
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

// maxDocument is the largest document Diff takes: offsets are 32 bits.
const maxDocument = math.MaxInt32

// Diff returns the operations that turn document a into document b.
func Diff(a, b []byte) ([]Operation, error) {
	if len(a) > maxDocument || len(b) > maxDocument {
		return nil, fmt.Errorf("rawpatch: documents of %d and %d bytes: the limit is %d", len(a), len(b), maxDocument)
	}
	d := differs.Get().(*differ)
	defer d.release()
	ra, err := d.a.scan(a)
	if err != nil {
		return nil, fmt.Errorf("rawpatch: first document: %w", err)
	}
	rb, err := d.b.scan(b)
	if err != nil {
		return nil, fmt.Errorf("rawpatch: second document: %w", err)
	}
	if err := d.value("", ra, rb); err != nil {
		return nil, err
	}
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

// span is one value in a document: its bytes are raw[start:end]; for an
// object member, the quoted name is raw[nameStart:nameEnd]; for an object
// or array, c is its index in the document's containers, else -1.
type span struct {
	start, end         int32
	nameStart, nameEnd int32
	c                  int32
}

// doc is a document and its containers (objects and arrays) in the order
// they open: where each starts and ends, and the index of the first
// container after it and everything inside it.
type doc struct {
	raw               []byte
	starts, ends, nxt []int32
}

// scan pairs the brackets of raw, checking that they match and that
// strings end, and returns the span of its one top-level value.
func (d *doc) scan(raw []byte) (span, error) {
	d.raw, d.starts, d.ends, d.nxt = raw, d.starts[:0], d.ends[:0], d.nxt[:0]
	i := skipSpace(raw, 0)
	if i >= len(raw) {
		return span{}, io.ErrUnexpectedEOF
	}
	if c := raw[i]; c != '{' && c != '[' {
		end, err := scanScalar(raw, i)
		if err != nil {
			return span{}, err
		}
		return d.top(span{start: off(i), end: off(end), nameStart: -1, nameEnd: -1, c: -1})
	}
	var stack [32]int
	open := stack[:0]
	for j := i; j < len(raw); j++ {
		// Eight bytes at a time to the next quote or bracket (or'ing in
		// 0x20 turns '[' into '{' and ']' into '}', and nothing else into
		// either).
		for j+8 <= len(raw) {
			w := binary.LittleEndian.Uint64(raw[j:])
			f := w | ones*0x20
			if m := zeroBytes(w^(ones*'"')) | zeroBytes(f^(ones*'{')) | zeroBytes(f^(ones*'}')); m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		if j >= len(raw) {
			break
		}
		switch c := raw[j]; c {
		case '"':
			end, err := scanString(raw, j)
			if err != nil {
				return span{}, err
			}
			j = end - 1
		case '{', '[':
			open = append(open, len(d.starts))
			d.starts, d.ends, d.nxt = append(double(d.starts), off(j)), append(double(d.ends), 0), append(double(d.nxt), 0)
		case '}', ']':
			if len(open) == 0 {
				return span{}, fmt.Errorf("offset %d: unexpected %q", j, c)
			}
			k := open[len(open)-1]
			if (raw[d.starts[k]] == '{') != (c == '}') {
				return span{}, fmt.Errorf("offset %d: unexpected %q", j, c)
			}
			open = open[:len(open)-1]
			d.ends[k], d.nxt[k] = off(j+1), off(len(d.starts))
			if len(open) == 0 {
				return d.top(span{start: off(i), end: off(j + 1), nameStart: -1, nameEnd: -1, c: 0})
			}
		}
	}
	return span{}, io.ErrUnexpectedEOF
}

// top checks that nothing but space follows the top-level value v.
func (d *doc) top(v span) (span, error) {
	if j := skipSpace(d.raw, int(v.end)); j != len(d.raw) {
		return span{}, fmt.Errorf("offset %d: data after the top-level value", j)
	}
	return v, nil
}

// children appends the members of the object, or the elements of the
// array, v to dst, checking the separators between them. It reads only
// v's own level: nested containers are jumped over.
func (d *doc) children(v span, dst []span) ([]span, error) {
	raw := d.raw
	vstart, vend := int(v.start), int(v.end)
	object := raw[vstart] == '{'
	closing := byte(']')
	if object {
		closing = '}'
	}
	next := int(v.c) + 1 // the next nested container, in document order
	i := skipSpace(raw, vstart+1)
	if i < vend && raw[i] == closing {
		return dst, nil
	}
	for {
		c := span{nameStart: -1, nameEnd: -1, c: -1}
		if object {
			end, err := scanString(raw, i)
			if err != nil {
				return nil, fmt.Errorf("member name: %w", err)
			}
			c.nameStart, c.nameEnd = off(i), off(end)
			if i = skipSpace(raw, end); i >= len(raw) || raw[i] != ':' {
				return nil, fmt.Errorf("offset %d: want ':' after a member name", i)
			}
			i = skipSpace(raw, i+1)
		}
		if i >= vend {
			return nil, fmt.Errorf("offset %d: want a value", i)
		}
		c.start = off(i)
		end := 0
		if raw[i] == '{' || raw[i] == '[' {
			// Brackets were paired in document order, so this is the
			// next container.
			if next >= len(d.starts) || int(d.starts[next]) != i {
				return nil, fmt.Errorf("offset %d: unexpected %q", i, raw[i])
			}
			c.c, end, next = off(next), int(d.ends[next]), int(d.nxt[next])
		} else {
			var err error
			if end, err = scanScalar(raw, i); err != nil {
				return nil, err
			}
		}
		c.end = off(end)
		dst = append(double(dst), c)
		i = skipSpace(raw, end)
		switch {
		case i >= vend:
			return nil, io.ErrUnexpectedEOF
		case raw[i] == closing:
			return dst, nil
		case raw[i] != ',':
			return nil, fmt.Errorf("offset %d: want ',' or %q, got %q", i, closing, raw[i])
		}
		if i = skipSpace(raw, i+1); i < len(raw) && (raw[i] == '}' || raw[i] == ']') {
			return nil, fmt.Errorf("offset %d: trailing comma", i)
		}
	}
}

// off is an offset or index as a span holds it: Diff refuses documents
// over MaxDocument, so it fits.
func off(i int) int32 { return int32(i) } //nolint:gosec // see above

// double makes room for one more element in s, doubling a full slice:
// append grows large slices by a quarter, which allocates five times the
// final size on the way to a hostile pod's 100,000 members.
func double[T any](s []T) []T {
	if len(s) < cap(s) {
		return s
	}
	return slices.Grow(s, max(len(s), 8))
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
	j := i + 1
	for {
		// Eight bytes at a time to the next quote or backslash.
		for j+8 <= len(raw) {
			w := binary.LittleEndian.Uint64(raw[j:])
			m := zeroBytes(w^(ones*'"')) | zeroBytes(w^(ones*'\\'))
			if m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		for j < len(raw) && raw[j] != '"' && raw[j] != '\\' {
			j++
		}
		switch {
		case j >= len(raw):
			return 0, fmt.Errorf("offset %d: unterminated string", i)
		case raw[j] == '"':
			return j + 1, nil
		}
		j += 2 // an escape: the backslash and the byte it escapes
	}
}

const ones = 0x0101010101010101

// zeroBytes has the high bit set in the lowest byte of w that is zero (and
// possibly in higher bytes after it, never before it).
func zeroBytes(w uint64) uint64 { return (w - ones) &^ w & (ones * 0x80) }

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
	a, b doc
	ops  []Operation
	// ca and cb hold the children of the values being compared at every
	// open level, deepest last: a level takes its children off their ends
	// and gives the space back when it is done.
	ca, cb []span
}

var differs = sync.Pool{New: func() any { return new(differ) }}

// release returns d to the pool; the operations it made belong to the
// caller.
func (d *differ) release() {
	d.a.raw, d.b.raw, d.ops = nil, nil, nil
	d.ca, d.cb = d.ca[:0], d.cb[:0]
	differs.Put(d)
}

func (d *differ) add(op, path string, value []byte) {
	d.ops = append(double(d.ops), Operation{Op: op, Path: path, Value: value})
}

func (d *differ) bytesA(v span) []byte { return d.a.raw[v.start:v.end] }
func (d *differ) bytesB(v span) []byte { return d.b.raw[v.start:v.end] }

// value diffs value x of a and value y of b, found at path.
func (d *differ) value(path string, x, y span) error {
	if bytes.Equal(d.bytesA(x), d.bytesB(y)) {
		return nil
	}
	ka, kb := d.a.raw[x.start], d.b.raw[y.start]
	if ka != kb || (ka != '{' && ka != '[') {
		d.add("replace", path, d.bytesB(y))
		return nil
	}
	na, nb := len(d.ca), len(d.cb)
	defer func() { d.ca, d.cb = d.ca[:na], d.cb[:nb] }()
	ca, err := d.a.children(x, d.ca)
	if err != nil {
		return fmt.Errorf("rawpatch: first document: %w", err)
	}
	cb, err := d.b.children(y, d.cb)
	if err != nil {
		return fmt.Errorf("rawpatch: second document: %w", err)
	}
	d.ca, d.cb = ca, cb
	// This level's children, capped so that deeper levels appending to
	// d.ca and d.cb never write over them.
	if ka == '{' {
		return d.object(path, d.ca[na:len(d.ca):len(d.ca)], d.cb[nb:len(d.cb):len(d.cb)])
	}
	return d.array(path, d.ca[na:len(d.ca):len(d.ca)], d.cb[nb:len(d.cb):len(d.cb)])
}

// smallObject is the member count up to which members are looked up by a
// scan (no allocation); larger objects (a hostile pod's 100,000 labels) get
// an index, so the lookup stays linear in the object.
const smallObject = 32

func (d *differ) object(path string, ma, mb []span) error {
	// Members usually come in the same order on both sides (one encoder
	// wrote both), so the lookup tries where the last match left off;
	// members of b no member of a matched are added.
	inB := nameIndex{raw: d.b.raw, members: mb}
	var small [1]uint64
	matched := small[:]
	if len(mb) > 64 {
		matched = make([]uint64, (len(mb)+63)/64)
	}
	next, inOrder := 0, true
	for _, c := range ma {
		name := d.a.raw[c.nameStart:c.nameEnd]
		m := next
		if m >= len(mb) || !bytes.Equal(d.b.raw[mb[m].nameStart:mb[m].nameEnd], name) {
			m, inOrder = inB.find(name), false
		}
		if m < 0 {
			d.add("remove", path+"/"+member(name), nil)
			continue
		}
		matched[m/64] |= 1 << (m % 64)
		next = m + 1
		// Equal values are the common case: compare before building the
		// member's path.
		if bytes.Equal(d.bytesA(c), d.bytesB(mb[m])) {
			continue
		}
		if err := d.value(path+"/"+member(name), c, mb[m]); err != nil {
			return err
		}
	}
	if inOrder && len(ma) == len(mb) {
		return nil
	}
	for j, m := range mb {
		if matched[j/64]&(1<<(j%64)) == 0 {
			d.add("add", path+"/"+member(d.b.raw[m.nameStart:m.nameEnd]), d.bytesB(m))
		}
	}
	return nil
}

// nameIndex finds an object's members by quoted name: a scan for small
// objects; for large ones (a hostile pod's 100,000 labels) a hash table of
// member indices, built on the first lookup, so the lookup stays linear in
// the object and copies no names.
type nameIndex struct {
	raw     []byte
	members []span
	slots   []int32 // member index + 1; 0 is empty
}

var nameSeed = maphash.MakeSeed()

// find returns the index of the first member named name, or -1.
func (x *nameIndex) find(name []byte) int {
	if len(x.members) <= smallObject {
		for i, m := range x.members {
			if bytes.Equal(x.raw[m.nameStart:m.nameEnd], name) {
				return i
			}
		}
		return -1
	}
	if x.slots == nil {
		x.build()
	}
	mask := uint64(len(x.slots) - 1) //nolint:gosec // a power of two, at least 1
	for h := maphash.Bytes(nameSeed, name) & mask; ; h = (h + 1) & mask {
		s := x.slots[h]
		if s == 0 {
			return -1
		}
		if m := x.members[s-1]; bytes.Equal(x.raw[m.nameStart:m.nameEnd], name) {
			return int(s - 1)
		}
	}
}

// build fills the table, at most half full; a repeated name keeps its
// first member.
func (x *nameIndex) build() {
	size := 1
	for size < 2*len(x.members) {
		size <<= 1
	}
	x.slots = make([]int32, size)
	mask := uint64(size - 1) //nolint:gosec // a power of two, at least 1
	for i, m := range x.members {
		name := x.raw[m.nameStart:m.nameEnd]
		for h := maphash.Bytes(nameSeed, name) & mask; ; h = (h + 1) & mask {
			s := x.slots[h]
			if s == 0 {
				x.slots[h] = off(i + 1)
				break
			}
			if o := x.members[s-1]; bytes.Equal(x.raw[o.nameStart:o.nameEnd], name) {
				break
			}
		}
	}
}

// member is the JSON pointer reference token of a quoted member name.
func member(quoted []byte) string {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		if u, err := jsontext.AppendUnquote(nil, quoted); err == nil {
			name = u
		}
	}
	return escape(string(name))
}

func (d *differ) array(path string, ae, be []span) error {
	// Walk the longest common subsequence of byte-equal elements; between
	// two matches, pair the unmatched elements of both sides (diffed in
	// place), then remove or add the rest. idx is the position in the array
	// as the operations so far have left it.
	i, j, idx := 0, 0, 0
	var err error
	for _, m := range d.lcs(ae, be) {
		if idx, err = d.gap(path, ae[i:m[0]], be[j:m[1]], idx); err != nil {
			return err
		}
		i, j, idx = m[0]+1, m[1]+1, idx+1
	}
	_, err = d.gap(path, ae[i:], be[j:], idx)
	return err
}

// gap emits the operations for a run of unmatched elements starting at
// index idx and returns the index after the run.
func (d *differ) gap(path string, a, b []span, idx int) (int, error) {
	paired := min(len(a), len(b))
	for k := range paired {
		if !bytes.Equal(d.bytesA(a[k]), d.bytesB(b[k])) {
			if err := d.value(path+"/"+strconv.Itoa(idx), a[k], b[k]); err != nil {
				return 0, err
			}
		}
		idx++
	}
	for range a[paired:] {
		d.add("remove", path+"/"+strconv.Itoa(idx), nil)
	}
	for _, v := range b[paired:] {
		d.add("add", path+"/"+strconv.Itoa(idx), d.bytesB(v))
		idx++
	}
	return idx, nil
}

// lcsBudget caps the cells of lcs's table (an int each): 2 MiB.
const lcsBudget = 1 << 18

// lcs returns the index pairs of a longest common subsequence of byte-equal
// elements, in order; within lcsBudget, else of the common prefix and
// suffix only.
func (d *differ) lcs(a, b []span) [][2]int {
	eq := func(x, y span) bool { return bytes.Equal(d.bytesA(x), d.bytesB(y)) }
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
	if len(ma) > 0 && len(mb) > 0 && len(ma)*len(mb) <= lcsBudget {
		// Classic dynamic programme over the middle; admission arrays have
		// tens of items. Past the budget (a hostile pod's thousands of
		// changed containers) the middle stays unmatched: array pairs its
		// items in place, which is linear and still a correct patch.
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
