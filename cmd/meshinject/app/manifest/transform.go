package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/internal/inject"
	"github.com/meshinject/meshinject/internal/podcodec"
)

// Object identifies the workload a pod comes from.
type Object struct {
	APIVersion, Kind, Namespace, Name string
}

// String is kind/namespace/name, as notes and errors name objects.
func (o Object) String() string {
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	return strings.ToLower(o.Kind) + "/" + ns + "/" + o.Name
}

// PodFunc changes pod, the pod (or pod template) of obj, in place and
// reports whether it changed anything.
type PodFunc func(obj Object, pod *corev1.Pod) (changed bool, err error)

// Transform applies fn to the pod of every workload in data and returns the
// resulting stream: one document per input document, separated by "---"
// (YAML) or newlines (JSON). Unchanged documents are copied byte for byte.
func Transform(data []byte, fn PodFunc) ([]byte, error) {
	if err := checkUTF8(data); err != nil {
		return nil, err
	}
	docs, err := Split(data)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	written := 0
	for _, d := range docs {
		b, keep, err := transformDoc(d, fn)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		if written > 0 && !d.JSON {
			out.WriteString("---\n")
		}
		out.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			out.WriteByte('\n')
		}
		written++
	}
	return out.Bytes(), nil
}

// checkUTF8 refuses input that is not UTF-8 (YAML and JSON are), naming
// the line and byte of the first bad sequence, so output always reads back.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			line := bytes.Count(data[:i], []byte("\n")) + 1
			return fmt.Errorf("line %d, byte %d: not valid UTF-8 (0x%02x)", line, i+1, data[i])
		}
		i += size
	}
	return nil
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

// docError wraps err with the document's index and absolute line.
func docError(d document, err error) error {
	msg := err.Error()
	line := d.Line
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		line = d.Line + n - 1
		msg = msg[:m[0]] + msg[m[1]:]
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	return fmt.Errorf("document %d, line %d: %s", d.Index, line, msg)
}

func transformDoc(d document, fn PodFunc) ([]byte, bool, error) {
	j := d.Raw
	if !d.JSON {
		var err error
		if j, err = yaml.YAMLToJSON(d.Raw); err != nil {
			return nil, false, docError(d, err)
		}
	}
	var tree any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tree); err != nil {
		return nil, false, docError(d, err)
	}
	if tree == nil {
		return nil, false, nil // empty document: comments or whitespace only
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return d.Raw, true, nil
	}
	changed, err := transformObject(obj, fn)
	if err != nil {
		return nil, false, fmt.Errorf("document %d, line %d: %w", d.Index, d.Line, err)
	}
	if !changed {
		return d.Raw, true, nil
	}
	if d.JSON {
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return nil, false, err
		}
		return append(b, '\n'), true, nil
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

func transformObject(obj map[string]any, fn PodFunc) (bool, error) {
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		changed := false
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			c, err := transformObject(m, fn)
			if err != nil {
				return false, fmt.Errorf("items[%d]: %w", i, err)
			}
			changed = changed || c
		}
		return changed, nil
	}
	ref := objectRef(obj)
	if kind == "Pod" {
		return transformPod(ref, obj, obj, fn)
	}
	path, ok := inject.TemplatePath(kind)
	if !ok {
		return false, nil
	}
	tmpl := obj
	for _, p := range path {
		next, ok := tmpl[p].(map[string]any)
		if !ok {
			return false, nil
		}
		tmpl = next
	}
	podTree := map[string]any{}
	for _, k := range []string{"metadata", "spec"} {
		if v, ok := tmpl[k]; ok {
			podTree[k] = v
		}
	}
	changed, err := transformPod(ref, podTree, podTree, fn)
	if err != nil || !changed {
		return changed, err
	}
	for _, k := range []string{"metadata", "spec"} {
		v, ok := podTree[k]
		if m, isMap := v.(map[string]any); ok && isMap && len(m) == 0 && k == "metadata" {
			ok = false // an empty template metadata is the same as none
		}
		if ok {
			tmpl[k] = v
		} else {
			delete(tmpl, k)
		}
	}
	return true, nil
}

func objectRef(obj map[string]any) Object {
	md, _ := obj["metadata"].(map[string]any)
	str := func(m map[string]any, k string) string {
		s, _ := m[k].(string)
		return s
	}
	return Object{APIVersion: str(obj, "apiVersion"), Kind: str(obj, "kind"), Namespace: str(md, "namespace"), Name: str(md, "name")}
}

// transformPod runs fn on raw, a pod's JSON tree, through the round trip
// the webhook uses (tidied, for people to read), and writes the result
// into dst.
func transformPod(ref Object, raw, dst map[string]any, fn PodFunc) (bool, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return false, err
	}
	out, changed, err := podcodec.RoundTrip(b, podcodec.Options{Tidy: true}, func(pod *corev1.Pod) (bool, error) {
		return fn(ref, pod)
	})
	var de *podcodec.DecodeError
	if errors.As(err, &de) {
		return false, fmt.Errorf("%s: %w", ref, de.Err)
	}
	if err != nil || !changed {
		return false, err
	}
	var tree map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(out, &tree); err != nil {
		return false, err
	}
	clear(dst)
	maps.Copy(dst, tree)
	return true, nil
}
