package podcodec

import (
	"encoding/json"
	"errors"
	"slices"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

	"github.com/meshinject/meshinject/internal/jsontree"
)

// mutation changes a decoded pod in place and reports whether it changed
// anything.
type mutation func(pod *corev1.Pod) (changed bool, err error)

// Options configures RoundTrip.
type Options struct {
	// Tidy drops the fields encoding invents from every pod's output, also
	// from what the mutation added: the form people read (the CLI's).
	// Default false: a pod whose every field the Pod type knows (what an API
	// server of our version sends) is encoded as the typed pod is, invented
	// fields and all, which is several times faster; a patch against raw
	// then drops them with Invented (the webhook's).
	Tidy bool
}

// DecodeError is a pod that does not decode as a Pod: not JSON, or a
// field holding the wrong kind of value.
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return "decode pod: " + e.Err.Error() }

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// RoundTrip is the one way a pod's JSON goes through a typed mutation, for
// the webhook and the CLI alike. It decodes raw into a Pod, lets mutate
// change it, and encodes the result as raw changed only by the mutation:
// the fields of raw the Pod type does not know (those of newer Kubernetes
// versions) are put back, and the fields encoding invents for unset ones
// are dropped (see Options.Tidy). It returns nil and false when mutate
// changed nothing.
func RoundTrip(raw []byte, opts Options, mutate mutation) ([]byte, bool, error) {
	var pod corev1.Pod
	unknown, err := decode(raw, &pod)
	if err != nil {
		return nil, false, &DecodeError{Err: err}
	}
	var known map[string]any
	if len(unknown) > 0 || opts.Tidy {
		if known, err = jsontree.Tree(&pod); err != nil {
			return nil, false, err
		}
	}
	changed, err := mutate(&pod)
	if err != nil || !changed {
		return nil, false, err
	}
	if known == nil {
		out, err := encode(&pod)
		return out, true, err
	}
	out, err := graft(raw, known, &pod)
	return out, true, err
}

// graft encodes the mutated pod with raw's fields the Pod type does not
// know put back and the fields the typed round trip invented taken out.
func graft(raw []byte, known map[string]any, pod *corev1.Pod) ([]byte, error) {
	var rawTree map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &rawTree); err != nil {
		return nil, err
	}
	out, err := jsontree.Tree(pod)
	if err != nil {
		return nil, err
	}
	Restore(rawTree, known, out)
	return json.Marshal(out)
}

// decode decodes raw into pod and returns the fields the Pod type does not
// know (and duplicates) as strict-decoding errors. The fast path is speed
// code (docs/performance.md, "Speed code"); it has
// encoding/json/v2's semantics (names matched case-sensitively, duplicate
// and unknown names rejected), so it succeeds only on a pod an API server
// of our version encoded, which is the usual request; anything it refuses
// is decoded again by sigs.k8s.io/json as Kubernetes decodes, which lists
// what it does not know.
func decode(raw []byte, pod *corev1.Pod) ([]error, error) {
	if jsonv2.Unmarshal(raw, pod, decodeOptions) == nil {
		return nil, nil
	}
	*pod = corev1.Pod{}
	return kjson.UnmarshalStrict(raw, pod, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
}

// decodeOptions are the fast path's: strict, and container lists grown by
// doubling (see decodeDoubling).
var decodeOptions = jsonv2.JoinOptions(jsonv2.RejectUnknownMembers(true),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(decodeDoubling[corev1.Container])))

// decodeDoubling decodes a JSON array into a slice grown by doubling. The
// default grows large slices by a quarter, which allocates about five
// times the final size, and a Container is over 300 bytes (a hostile pod
// has thousands). null and other kinds are left to the default.
func decodeDoubling[T any](dec *jsontext.Decoder, s *[]T) error {
	if dec.PeekKind() != '[' {
		return errors.ErrUnsupported // the default handles it
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	out := make([]T, 0, 1)
	for dec.PeekKind() != ']' {
		if len(out) == cap(out) {
			out = slices.Grow(out, len(out))
		}
		out = out[:len(out)+1]
		if err := jsonv2.UnmarshalDecode(dec, &out[len(out)-1]); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*s = out
	return nil
}

// encode encodes pod as the API server does, with encoding/json, so a
// patch finds the user's unchanged fields byte-equal to the request's
// (why not a faster codec: docs/performance.md).
func encode(pod *corev1.Pod) ([]byte, error) {
	return json.Marshal(pod)
}
