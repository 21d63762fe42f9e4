package inject

import (
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// record is what an injection changed beyond the lists its status
// annotation names. It is stored as JSON in AnnotationUninject so that
// Uninject restores the pod exactly.
type record struct {
	// Labels and Annotations: keys injection added, and original values of
	// keys it changed or removed.
	Labels      *mapDiff `json:"labels,omitempty"`
	Annotations *mapDiff `json:"annotations,omitempty"`
	// Metadata and Spec hold the original values of other fields templates
	// set (JSON null when the field was unset).
	Metadata map[string]json.RawMessage `json:"metadata,omitempty"`
	Spec     map[string]json.RawMessage `json:"spec,omitempty"`
	// PortNames maps a rewritten probe's path to the port name its original
	// used; ISTIO_KUBE_APP_PROBERS holds the resolved number.
	PortNames map[string]string `json:"portNames,omitempty"`
	// Positions holds the original index of each user container that a
	// template also defined, keyed "containers/<name>" or
	// "initContainers/<name>".
	Positions map[string]int `json:"positions,omitempty"`

	labels, annotations map[string]string
}

type mapDiff struct {
	Added   []string          `json:"added,omitempty"`
	Changed map[string]string `json:"changed,omitempty"`
}

func newRecord(pod *corev1.Pod) *record {
	return &record{labels: maps.Clone(pod.Labels), annotations: maps.Clone(pod.Annotations)}
}

// touch notes the original value of a field a template sets; the first
// touch wins.
func (r *record) touch(part, field string, original any) {
	m := &r.Spec
	if part == "metadata" {
		m = &r.Metadata
	}
	if *m == nil {
		*m = map[string]json.RawMessage{}
	}
	if _, ok := (*m)[field]; ok {
		return
	}
	b, err := json.Marshal(original)
	if err != nil {
		b = []byte("null")
	}
	(*m)[field] = b
}

// internalAnnotations are written by injection and always removed by
// Uninject, so they are not part of the recorded diff.
var internalAnnotations = map[string]bool{
	AnnotationStatus: true, annotationOverrides: true, annotationUninject: true,
}

func diffMaps(before, after map[string]string, skip map[string]bool) *mapDiff {
	d := &mapDiff{}
	for k := range after {
		if skip[k] {
			continue
		}
		if _, ok := before[k]; !ok {
			d.Added = append(d.Added, k)
		}
	}
	slices.Sort(d.Added)
	for k, v := range before {
		if skip[k] {
			continue
		}
		if nv, ok := after[k]; !ok || nv != v {
			if d.Changed == nil {
				d.Changed = map[string]string{}
			}
			d.Changed[k] = v
		}
	}
	if d.Added == nil && d.Changed == nil {
		return nil
	}
	return d
}

// finish computes the metadata diff and stores the record on pod.
func (r *record) finish(pod *corev1.Pod) error {
	r.Labels = diffMaps(r.labels, pod.Labels, nil)
	r.Annotations = diffMaps(r.annotations, pod.Annotations, internalAnnotations)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annotationUninject] = string(b)
	return nil
}

// restoreMap undoes d on m and returns the result (nil when empty).
func restoreMap(m map[string]string, d *mapDiff) map[string]string {
	if d == nil {
		return m
	}
	for _, k := range d.Added {
		delete(m, k)
	}
	for k, v := range d.Changed {
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m
}
