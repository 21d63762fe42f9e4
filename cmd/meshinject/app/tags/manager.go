package tags

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Manager sets, removes and lists revision tags in a cluster.
type Manager struct {
	// Client is the cluster's client.
	Client kubernetes.Interface
	// ConfigNamespace is where a revision's configuration ConfigMap
	// (meshinject[-<revision>]-config) is when its configuration sends
	// reviews to a URL. Default: the namespace of its Service, else
	// meshinject.
	ConfigNamespace string
}

// SetOptions are the options of Set.
type SetOptions struct {
	// Revision is the revision the tag moves to ("default" for the
	// default revision).
	Revision string
	// Overwrite moves a tag that points to another revision.
	Overwrite bool
}

// Generate is the configuration Set would write for tag, without
// writing it.
func (m *Manager) Generate(ctx context.Context, tag, revision string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if revision == "" {
		revision = defaultTag
	}
	rev, err := m.revisionConfig(ctx, revision)
	if err != nil {
		return nil, err
	}
	return Build(rev, tag)
}

// Set creates tag's configuration for the revision, or moves it there. It
// refuses a tag that names a revision, the tag default for the default
// revision (which has those entries already), and moving a tag without
// Overwrite.
func (m *Manager) Set(ctx context.Context, tag string, o SetOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	revision := o.Revision
	if revision == "" {
		revision = defaultTag
	}
	if err := validTag(tag); err != nil {
		return nil, err
	}
	if tag == defaultTag && revision == defaultTag {
		return nil, errors.New(`tag "default": the default revision already injects the default tag's pods; point it at another revision`)
	}
	if tag == revision {
		return nil, fmt.Errorf("tag %q: a tag cannot name its own revision", tag)
	}
	if _, err := m.revisionConfig(ctx, tag); err == nil {
		return nil, fmt.Errorf("tag %q: that is a revision's name (its MutatingWebhookConfiguration is labelled %s=%s)", tag, LabelRevision, tag)
	}
	rev, err := m.revisionConfig(ctx, revision)
	if err != nil {
		return nil, err
	}
	want, err := Build(rev, tag)
	if err != nil {
		return nil, err
	}
	mwcs := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	var out *admissionregistrationv1.MutatingWebhookConfiguration
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := mwcs.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out, err = mwcs.Create(ctx, want, metav1.CreateOptions{FieldManager: "meshinject"})
			return err
		}
		if err != nil {
			return err
		}
		if from := cur.Labels[LabelRevision]; from != revision && !o.Overwrite {
			return fmt.Errorf("tag %q points to revision %q: --overwrite moves it to %q", tag, from, revision)
		}
		next := want.DeepCopy()
		next.ResourceVersion = cur.ResourceVersion
		out, err = mwcs.Update(ctx, next, metav1.UpdateOptions{FieldManager: "meshinject"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("set tag %q: %w", tag, err)
	}
	return out, nil
}

// revisionConfig is the revision's own MutatingWebhookConfiguration
// (labelled meshinject.io/rev=<revision>, without meshinject.io/tag).
func (m *Manager) revisionConfig(ctx context.Context, revision string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	list, err := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx,
		metav1.ListOptions{LabelSelector: LabelRevision + "=" + revision + ",!" + labelTag})
	if err != nil {
		return nil, fmt.Errorf("revision %q: %w", revision, err)
	}
	switch len(list.Items) {
	case 0:
		return nil, fmt.Errorf("revision %q: no MutatingWebhookConfiguration is labelled %s=%s (is that revision installed?)", revision, LabelRevision, revision)
	case 1:
		return &list.Items[0], nil
	default:
		var names []string
		for _, i := range list.Items {
			names = append(names, i.Name)
		}
		return nil, fmt.Errorf("revision %q: %d MutatingWebhookConfigurations are labelled %s=%s (%s); want one", revision, len(names), LabelRevision, revision, strings.Join(names, ", "))
	}
}

// Remove deletes tag's configuration. Unless force, it refuses while
// namespaces still select the tag, naming them: their new pods would no
// longer be injected.
func (m *Manager) Remove(ctx context.Context, tag string, force bool) error {
	mwcs := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := mwcs.Get(ctx, Name(tag), metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("tag %q: no MutatingWebhookConfiguration %s", tag, Name(tag))
		}
		return err
	}
	if !force {
		ns, err := m.namespaces(ctx, tag)
		if err != nil {
			return err
		}
		if len(ns) > 0 {
			return fmt.Errorf("tag %q still serves namespaces %s; relabel them, or --skip-confirmation to remove it anyway", tag, strings.Join(ns, ", "))
		}
	}
	if err := mwcs.Delete(ctx, Name(tag), metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("remove tag %q: %w", tag, err)
	}
	return nil
}

// namespaces are the names of the namespaces that select tag.
func (m *Manager) namespaces(ctx context.Context, tag string) ([]string, error) {
	var out []string
	for _, sel := range servedNamespaces(tag) {
		list, err := m.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("namespaces of tag %q: %w", tag, err)
		}
		for _, n := range list.Items {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
