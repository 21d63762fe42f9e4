// Package selftls is self-managed TLS for the webhook: a CA and a serving
// certificate kept in a Secret shared by every replica (created if absent;
// a replica that loses the race adopts the winner's), renewed two thirds
// through its lifetime under the same CA, and the CA written into the
// caBundle of every webhook of the labelled MutatingWebhookConfigurations,
// rewritten if someone changes it.
package selftls

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/internal/promreg"
)

// Options configure self-managed TLS.
type Options struct {
	// Namespace holds the Secret. Default: $POD_NAMESPACE, else "meshinject".
	Namespace string
	// SecretName is the Secret shared by all replicas. Default
	// "meshinject-tls", or "meshinject-<revision>-tls".
	SecretName string
	// ServiceName is the webhook Service; the certificate is valid for
	// <service>.<namespace>.svc and its cluster.local form. Default
	// "meshinject", or "meshinject-<revision>".
	ServiceName string
	// ExtraNames are further DNS names or IP addresses for the certificate.
	ExtraNames []string
	// WebhookSelector selects the MutatingWebhookConfigurations whose
	// caBundle is managed. Default "meshinject.io/rev=<revision|default>".
	WebhookSelector string
	// ServingDuration is the serving certificate's lifetime; it is renewed
	// two thirds through. Default 90 days.
	ServingDuration time.Duration
	// CheckInterval is how often the Secret and the renewal time are
	// checked. Default 1 minute.
	CheckInterval time.Duration
}

// The defaults of Options' durations.
const (
	// DefaultServingDuration is the serving certificate's lifetime: 90 days.
	DefaultServingDuration = 90 * 24 * time.Hour
	// DefaultCheckInterval is how often the Secret is checked.
	DefaultCheckInterval = time.Minute
)

// SetDefaults fills in the documented defaults for revision.
func (o *Options) SetDefaults(revision string) {
	if o.Namespace == "" {
		o.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if o.Namespace == "" {
		o.Namespace = "meshinject"
	}
	base := "meshinject"
	if revision != "" {
		base += "-" + revision
	}
	if o.SecretName == "" {
		o.SecretName = base + "-tls"
	}
	if o.ServiceName == "" {
		o.ServiceName = base
	}
	if o.WebhookSelector == "" {
		rev := revision
		if rev == "" {
			rev = "default"
		}
		o.WebhookSelector = "meshinject.io/rev=" + rev
	}
	if o.ServingDuration == 0 {
		o.ServingDuration = DefaultServingDuration
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
}

// manager keeps the serving certificate and the caBundle.
type manager struct {
	client   kubernetes.Interface
	opts     Options
	factory  informers.SharedInformerFactory
	webhooks admissionlisters.MutatingWebhookConfigurationLister
	kick     chan struct{}
	log      logr.Logger
	expiry   prometheus.Gauge
	ca       atomic.Pointer[certs.Bundle]
	serving  atomic.Pointer[tls.Certificate]
	leaf     atomic.Pointer[certs.Bundle]
	written  atomic.Bool
}

// New returns the manager for opts (defaults already set); nothing
// starts until Start.
func New(client kubernetes.Interface, opts Options, reg prometheus.Registerer, log logr.Logger) (*manager, error) {
	s := &manager{client: client, opts: opts, log: log, expiry: NewExpiryGauge(), kick: make(chan struct{}, 1)}
	if err := promreg.Register(reg, &s.expiry); err != nil {
		return nil, fmt.Errorf("register certificate metrics: %w", err)
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = opts.WebhookSelector }))
	mwcs := s.factory.Admissionregistration().V1().MutatingWebhookConfigurations()
	poke := func(any) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if _, err := mwcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }}); err != nil {
		return nil, err
	}
	s.webhooks = mwcs.Lister()
	return s, nil
}

// NewExpiryGauge is meshinject_certificate_expiry_timestamp_seconds.
func NewExpiryGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshinject_certificate_expiry_timestamp_seconds",
		Help: "When the serving certificate expires, in seconds since the epoch.",
	})
}

const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
)

func (s *manager) names() ([]string, []net.IP) {
	svc, ns := s.opts.ServiceName, s.opts.Namespace
	dns := []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
	var ips []net.IP
	for _, n := range s.opts.ExtraNames {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

func (s *manager) issue(ca *certs.Bundle) (*certs.Bundle, error) {
	dns, ips := s.names()
	return certs.NewServing(ca, certs.Options{CommonName: dns[0], DNSNames: dns, IPAddresses: ips, Duration: s.opts.ServingDuration})
}

// Ensure makes the Secret hold a valid CA and a serving certificate that is
// not yet due for renewal, creating or updating it with optimistic
// concurrency: when another replica wins a race, its certificate is
// adopted.
func (s *manager) Ensure(ctx context.Context) error {
	secrets := s.client.CoreV1().Secrets(s.opts.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		sec, err := secrets.Get(ctx, s.opts.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			ca, leaf, data, err := s.newSecretData()
			if err != nil {
				return err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.opts.SecretName, Namespace: s.opts.Namespace,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "meshinject"}},
				Type: corev1.SecretTypeTLS,
				Data: data,
			}
			if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				continue // another replica created it first: use theirs
			} else if err != nil {
				return fmt.Errorf("create secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
			}
			s.log.Info("created the TLS secret", "secret", klog.KRef(s.opts.Namespace, s.opts.SecretName))
			return s.use(ca, leaf)
		}
		if err != nil {
			return fmt.Errorf("get secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
		}
		if len(sec.Data[keyCAKey]) == 0 {
			// Not one self-managed TLS wrote: cert-manager's, left behind
			// when a release moves from cert-manager to self-managed TLS
			// (cert-manager keeps a Certificate's Secret when the
			// Certificate goes). Take it over with a CA of our own.
			if err := s.takeOver(ctx, sec); apierrors.IsConflict(err) {
				continue
			} else if err != nil {
				return err
			}
			continue
		}
		ca, err := certs.Parse(sec.Data[keyCACert], sec.Data[keyCAKey])
		if err != nil {
			return fmt.Errorf("secret %s/%s: CA: %w", s.opts.Namespace, s.opts.SecretName, err)
		}
		leaf, err := certs.Parse(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
		if err == nil && time.Now().Before(certs.RenewAt(leaf.Cert)) && s.matches(leaf) {
			return s.use(ca, leaf)
		}
		// Missing, unparsable, due for renewal or for other names: renew
		// under the same CA, so the caBundle stays valid.
		if leaf, err = s.issue(ca); err != nil {
			return err
		}
		sec = sec.DeepCopy()
		sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = leaf.CertPEM, leaf.KeyPEM
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue // another replica renewed it first: use theirs
		} else if err != nil {
			return fmt.Errorf("update secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
		}
		s.log.Info("renewed the serving certificate", "notAfter", leaf.Cert.NotAfter)
		return s.use(ca, leaf)
	}
	return errors.New("the TLS secret kept changing under us; giving up for now")
}

// newSecretData returns a new CA, a serving certificate it signed, and
// the Secret data holding both.
func (s *manager) newSecretData() (ca, leaf *certs.Bundle, data map[string][]byte, err error) {
	if ca, err = certs.NewCA(certs.Options{CommonName: "meshinject-ca"}); err != nil {
		return nil, nil, nil, err
	}
	if leaf, err = s.issue(ca); err != nil {
		return nil, nil, nil, err
	}
	return ca, leaf, map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, keyCACert: ca.CertPEM, keyCAKey: ca.KeyPEM}, nil
}

// takeOver replaces the Secret's content (it holds no CA key, so
// self-managed TLS did not write it) with a new CA and serving
// certificate, with optimistic concurrency.
func (s *manager) takeOver(ctx context.Context, sec *corev1.Secret) error {
	_, _, data, err := s.newSecretData()
	if err != nil {
		return err
	}
	sec = sec.DeepCopy()
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	sec.Labels["app.kubernetes.io/managed-by"] = "meshinject"
	sec.Data = data
	if _, err := s.client.CoreV1().Secrets(s.opts.Namespace).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("take over secret %s/%s (no %s: not written by self-managed TLS): %w", s.opts.Namespace, s.opts.SecretName, keyCAKey, err)
	}
	s.log.Info("took over the TLS secret: it held no CA key (another issuer's, such as cert-manager's)", "secret", klog.KRef(s.opts.Namespace, s.opts.SecretName))
	return nil
}

func (s *manager) matches(leaf *certs.Bundle) bool {
	dns, ips := s.names()
	for _, d := range dns {
		if !slices.Contains(leaf.Cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.Cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (s *manager) use(ca, leaf *certs.Bundle) error {
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		return err
	}
	if old := s.leaf.Load(); old == nil || old.Cert.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
		s.log.Info("serving certificate loaded", "notAfter", leaf.Cert.NotAfter, "renewAt", certs.RenewAt(leaf.Cert))
	}
	s.ca.Store(ca)
	s.leaf.Store(leaf)
	s.serving.Store(&pair)
	s.expiry.Set(float64(leaf.Cert.NotAfter.Unix()))
	return nil
}

// GetCertificate is the tls.Config hook: the current serving certificate.
func (s *manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.serving.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no serving certificate yet")
}

// Ready is a readiness check: nil once the caBundle has been written into
// at least one selected webhook configuration.
func (s *manager) Ready() error {
	if !s.written.Load() {
		return errors.New("caBundle not written yet")
	}
	return nil
}

// Start keeps the certificate renewed and the caBundle in place until ctx
// ends, then waits for its informer to stop.
func (s *manager) Start(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	s.factory.WaitForCacheSync(ctx.Done())
	ticker := time.NewTicker(s.opts.CheckInterval)
	defer ticker.Stop()
	for {
		if err := s.writeCABundle(ctx); err != nil {
			s.log.Error(err, "writing the caBundle")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-ticker.C:
			if err := s.Ensure(ctx); err != nil {
				s.log.Error(err, "checking the TLS secret")
			}
		}
	}
}

// writeCABundle writes the CA into every webhook of the selected
// configurations (read from the informer) that lacks it, with a JSON patch
// of just those caBundles that carries the resourceVersion read, so a
// concurrent change is a conflict: the patch is then retried on the
// configuration as it is now.
func (s *manager) writeCABundle(ctx context.Context) error {
	ca := s.ca.Load()
	if ca == nil {
		return errors.New("no CA loaded")
	}
	list, err := s.webhooks.List(labels.Everything())
	if err != nil {
		return err
	}
	api := s.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	for _, cached := range list {
		mwc := cached
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			patch, err := caBundlePatch(mwc, ca.CertPEM)
			if err != nil || patch == nil {
				return err
			}
			if _, err = api.Patch(ctx, mwc.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); apierrors.IsConflict(err) {
				if cur, gerr := api.Get(ctx, mwc.Name, metav1.GetOptions{}); gerr == nil {
					mwc = cur
				}
			} else if err == nil {
				s.log.Info("caBundle written", "mutatingWebhookConfiguration", mwc.Name)
			}
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("write the caBundle of %s: %w", mwc.Name, err)
		}
	}
	s.written.Store(len(list) > 0)
	return nil
}

// caBundlePatch is the JSON patch that sets caBundle in every webhook of
// mwc that lacks it, conditional on mwc's resourceVersion; nil when none
// does.
func caBundlePatch(mwc *admissionregistrationv1.MutatingWebhookConfiguration, caPEM []byte) ([]byte, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{{Op: "add", Path: "/metadata/resourceVersion", Value: mwc.ResourceVersion}}
	for j := range mwc.Webhooks {
		if !bytes.Equal(mwc.Webhooks[j].ClientConfig.CABundle, caPEM) {
			ops = append(ops, op{Op: "add", Path: fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", j), Value: caPEM})
		}
	}
	if len(ops) == 1 {
		return nil, nil
	}
	return json.Marshal(ops)
}
