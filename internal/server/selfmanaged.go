package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshinject/meshinject/certs"
)

// SelfManagedOptions configure self-managed TLS.
type SelfManagedOptions struct {
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
	// caBundle is managed. Default "istio.io/rev=<revision|default>".
	WebhookSelector string
	// ServingDuration is the serving certificate's lifetime; it is renewed
	// two thirds through. Default 90 days.
	ServingDuration time.Duration
	// CheckInterval is how often the Secret and the renewal time are
	// checked. Default 1 minute.
	CheckInterval time.Duration
}

func (o *SelfManagedOptions) setDefaults(revision string) {
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
		o.WebhookSelector = "istio.io/rev=" + rev
	}
	if o.ServingDuration == 0 {
		o.ServingDuration = 90 * 24 * time.Hour
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = time.Minute
	}
}

// selfManaged keeps the serving certificate and the caBundle.
type selfManaged struct {
	client  kubernetes.Interface
	opts    SelfManagedOptions
	log     logr.Logger
	expiry  prometheus.Gauge
	ca      atomic.Pointer[certs.Bundle]
	serving atomic.Pointer[tls.Certificate]
	leaf    atomic.Pointer[certs.Bundle]
	written atomic.Bool
}

func newSelfManaged(client kubernetes.Interface, opts SelfManagedOptions, reg prometheus.Registerer, log logr.Logger) (*selfManaged, error) {
	s := &selfManaged{client: client, opts: opts, log: log, expiry: newExpiryGauge()}
	if err := reg.Register(s.expiry); err != nil {
		return nil, err
	}
	return s, nil
}

func newExpiryGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshinject_certificate_expiry_timestamp_seconds",
		Help: "When the serving certificate expires, in seconds since the epoch.",
	})
}

const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
)

func (s *selfManaged) names() ([]string, []net.IP) {
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

func (s *selfManaged) issue(ca *certs.Bundle) (*certs.Bundle, error) {
	dns, ips := s.names()
	return certs.NewServing(ca, certs.Options{CommonName: dns[0], DNSNames: dns, IPAddresses: ips, Duration: s.opts.ServingDuration})
}

// ensure makes the Secret hold a valid CA and a serving certificate that is
// not yet due for renewal, creating or updating it with optimistic
// concurrency: when another replica wins a race, its certificate is adopted.
func (s *selfManaged) ensure(ctx context.Context) error {
	secrets := s.client.CoreV1().Secrets(s.opts.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		sec, err := secrets.Get(ctx, s.opts.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			ca, err := certs.NewCA(certs.Options{CommonName: "meshinject-ca"})
			if err != nil {
				return err
			}
			leaf, err := s.issue(ca)
			if err != nil {
				return err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.opts.SecretName, Namespace: s.opts.Namespace,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "meshinject"}},
				Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, keyCACert: ca.CertPEM, keyCAKey: ca.KeyPEM},
			}
			if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				continue // another replica created it first: use theirs
			} else if err != nil {
				return fmt.Errorf("create secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
			}
			s.log.Info("created the TLS secret", "secret", klogRef(s.opts.Namespace, s.opts.SecretName))
			return s.use(ca, leaf)
		}
		if err != nil {
			return fmt.Errorf("get secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
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

func (s *selfManaged) matches(leaf *certs.Bundle) bool {
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

func (s *selfManaged) use(ca, leaf *certs.Bundle) error {
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

func (s *selfManaged) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.serving.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no serving certificate yet")
}

func (s *selfManaged) caBundleWritten() bool { return s.written.Load() }

// run keeps the certificate renewed and the caBundle in place until ctx ends.
func (s *selfManaged) run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = s.opts.WebhookSelector }))
	inf := factory.Admissionregistration().V1().MutatingWebhookConfigurations().Informer()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	ticker := time.NewTicker(s.opts.CheckInterval)
	defer ticker.Stop()
	for {
		if err := s.writeCABundle(ctx); err != nil {
			s.log.Error(err, "writing the caBundle")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-ticker.C:
			if err := s.ensure(ctx); err != nil {
				s.log.Error(err, "checking the TLS secret")
			}
		}
	}
}

// writeCABundle puts the CA into every webhook of the selected
// MutatingWebhookConfigurations that does not carry it.
func (s *selfManaged) writeCABundle(ctx context.Context) error {
	ca := s.ca.Load()
	if ca == nil {
		return errors.New("no CA loaded")
	}
	api := s.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: s.opts.WebhookSelector})
	if err != nil {
		return err
	}
	for i := range list.Items {
		mwc := &list.Items[i]
		changed := false
		for j := range mwc.Webhooks {
			if !bytes.Equal(mwc.Webhooks[j].ClientConfig.CABundle, ca.CertPEM) {
				mwc.Webhooks[j].ClientConfig.CABundle = ca.CertPEM
				changed = true
			}
		}
		if !changed {
			continue
		}
		if _, err := api.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				continue // changed meanwhile; the informer brings us back
			}
			return fmt.Errorf("update caBundle of %s: %w", mwc.Name, err)
		}
		s.log.Info("caBundle written", "mutatingWebhookConfiguration", mwc.Name)
	}
	s.written.Store(len(list.Items) > 0)
	return nil
}
