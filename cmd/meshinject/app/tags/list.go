package tags

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
)

// Tag is a tag as List reports it.
type Tag struct {
	// Tag is the tag's name and Revision the revision it points to.
	Tag      string `json:"tag"`
	Revision string `json:"revision"`
	// Namespaces are the namespaces that select the tag.
	Namespaces []string `json:"namespaces"`
	// Pods counts the pods of those namespaces.
	Pods int `json:"pods"`
	// Stale are the pods among them that a restart would change: injected
	// by another revision, injected with a proxy image other than the
	// revision's configuration gives now, or not injected.
	Stale []StalePod `json:"stale"`
	// Note says what could not be checked.
	Note string `json:"note,omitempty"`
}

// StalePod is a pod that needs a restart, and why.
type StalePod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

// List reports every tag: its revision, its namespaces and their stale
// pods, by tag name.
func (m *Manager) List(ctx context.Context) ([]Tag, error) {
	list, err := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{LabelSelector: labelTag})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	var out []Tag
	for i := range list.Items {
		t, err := m.report(ctx, &list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Tag) int { return strings.Compare(a.Tag, b.Tag) })
	return out, nil
}

// report is one tag's row.
func (m *Manager) report(ctx context.Context, mwc *admissionregistrationv1.MutatingWebhookConfiguration) (Tag, error) {
	t := Tag{Tag: mwc.Labels[labelTag], Revision: mwc.Labels[LabelRevision], Namespaces: []string{}, Stale: []StalePod{}}
	ns, err := m.namespaces(ctx, t.Tag)
	if err != nil {
		return t, err
	}
	t.Namespaces = append(t.Namespaces, ns...)
	eng, err := m.engine(ctx, mwc, t.Revision)
	if err != nil {
		t.Note = "proxy images not compared: " + err.Error()
	}
	for _, n := range ns {
		pods, err := m.Client.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			return t, fmt.Errorf("pods of namespace %s: %w", n, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			t.Pods++
			if reason := staleReason(p, t.Revision, eng); reason != "" {
				t.Stale = append(t.Stale, StalePod{Namespace: n, Name: p.Name, Reason: reason})
			}
		}
	}
	return t, nil
}

// engine is the revision's injector as its configuration ConfigMap
// (meshinject[-<revision>]-config, beside its Service) has it now.
func (m *Manager) engine(ctx context.Context, mwc *admissionregistrationv1.MutatingWebhookConfiguration, revision string) (*inject.Engine, error) {
	ns, name := m.ConfigNamespace, "meshinject-config"
	if revision != defaultTag {
		name = "meshinject-" + revision + "-config"
	}
	if len(mwc.Webhooks) > 0 && mwc.Webhooks[0].ClientConfig.Service != nil {
		svc := mwc.Webhooks[0].ClientConfig.Service
		ns, name = svc.Namespace, svc.Name+"-config"
	}
	if ns == "" {
		ns = "meshinject"
	}
	cm, err := m.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("revision %s's configuration, ConfigMap %s/%s: %w", revision, ns, name, err)
	}
	rev := revision
	if rev == defaultTag {
		rev = ""
	}
	cfg, err := config.Load(config.Sources{InjectionConfig: []byte(cm.Data["config"]), Values: []byte(cm.Data["values"]),
		Mesh: []byte(cm.Data["mesh"]), Revision: rev})
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", ns, name, err)
	}
	return inject.New(inject.Options{Config: cfg})
}

// staleReason says why a restart would change pod, or "" when it would
// not (or cannot be told). eng may be nil: then only the revision is
// compared.
func staleReason(pod *corev1.Pod, revision string, eng *inject.Engine) string {
	if pod.DeletionTimestamp != nil || pod.Spec.HostNetwork {
		return ""
	}
	var st inject.Status
	raw, injected := pod.Annotations[inject.AnnotationStatus]
	if injected {
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			return ""
		}
		if cmp.Or(st.Revision, defaultTag) != revision {
			return "injected by revision " + cmp.Or(st.Revision, defaultTag)
		}
	}
	if eng == nil {
		return ""
	}
	p := pod.DeepCopy()
	if err := inject.Uninject(p); err != nil {
		return ""
	}
	res, err := eng.Inject(inject.Request{Pod: p, NativeSidecars: nativeProxy(pod)})
	switch {
	case err != nil || res.Skipped:
		return ""
	case !injected:
		return "not injected"
	}
	// istio-proxy first: its image is the one people upgrade.
	names := append(slices.Clone(st.InitContainers), st.Containers...)
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(boolInt(b == "istio-proxy"), boolInt(a == "istio-proxy")) })
	for _, name := range names {
		was, now := container(pod, name), container(res.Pod, name)
		if was != nil && now != nil && was.Image != now.Image {
			return fmt.Sprintf("%s runs %s; revision %s now injects %s", name, was.Image, revision, now.Image)
		}
	}
	return ""
}

// nativeProxy is whether pod runs istio-proxy as a native sidecar.
func nativeProxy(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == "istio-proxy" {
			return true
		}
	}
	return false
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
