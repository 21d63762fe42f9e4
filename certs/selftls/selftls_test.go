package selftls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/test/testutil"
)

func mwc(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"meshinject.io/rev": "default"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "namespace.meshinject.istio.io"}, {Name: "object.meshinject.istio.io"},
		},
	}
}

func newSM(t *testing.T, client kubernetes.Interface, o Options) *manager {
	t.Helper()
	o.SetDefaults("")
	s, err := New(client, o, prometheus.NewRegistry(), testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSelfManagedReplicas starts two replicas at once against one API: one
// Secret is created and both serve the same certificate.
func TestSelfManagedReplicas(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	a, b := newSM(t, client, Options{}), newSM(t, client, Options{})
	var wg sync.WaitGroup
	for _, s := range []*manager{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Ensure(t.Context()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if !bytes.Equal(a.leaf.Load().CertPEM, b.leaf.Load().CertPEM) || !bytes.Equal(a.ca.Load().CertPEM, b.ca.Load().CertPEM) {
		t.Error("the replicas serve different certificates")
	}
	secrets, err := client.CoreV1().Secrets("meshinject").List(t.Context(), metav1.ListOptions{})
	if err != nil || len(secrets.Items) != 1 {
		t.Fatalf("secrets: %v, %v", secrets, err)
	}
	if got := a.leaf.Load().Cert.DNSNames; len(got) < 2 || got[0] != "meshinject.meshinject.svc" {
		t.Errorf("DNS names %v", got)
	}
}

// TestSelfManagedCABundle writes the caBundle into every webhook of the
// labelled configurations, and restores it after tampering.
func TestSelfManagedCABundle(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(mwc("meshinject-default"))
	unrelated := mwc("other")
	unrelated.Labels = map[string]string{"meshinject.io/rev": "canary"}
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), unrelated, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newSM(t, client, Options{CheckInterval: 50 * time.Millisecond})
	if err := s.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	runSM(t, s)
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	want := s.ca.Load().CertPEM
	// Written, and readiness told so (the flag is set just after the
	// update the Get may already see).
	testutil.Eventually(t, 10*time.Second, func() bool {
		m, err := api.Get(t.Context(), "meshinject-default", metav1.GetOptions{})
		return err == nil && bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, want) &&
			bytes.Equal(m.Webhooks[1].ClientConfig.CABundle, want) && s.Ready() == nil
	})
	if o, _ := api.Get(t.Context(), "other", metav1.GetOptions{}); len(o.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("the caBundle of another revision's configuration was written")
	}
	// Tamper.
	m, _ := api.Get(t.Context(), "meshinject-default", metav1.GetOptions{})
	m.Webhooks[1].ClientConfig.CABundle = []byte("tampered")
	if _, err := api.Update(t.Context(), m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		m, err := api.Get(t.Context(), "meshinject-default", metav1.GetOptions{})
		return err == nil && bytes.Equal(m.Webhooks[1].ClientConfig.CABundle, want)
	})
}

// TestSelfManagedRotation renews a short-lived serving certificate while
// clients handshake continuously: the serial changes and no handshake fails.
func TestSelfManagedRotation(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(mwc("meshinject-default"))
	s := newSM(t, client, Options{ServingDuration: 3 * time.Second, CheckInterval: 100 * time.Millisecond, ExtraNames: []string{"127.0.0.1"}})
	if err := s.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := s.leaf.Load().Cert.SerialNumber.String()
	runSM(t, s)

	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Load().Cert)
	var failures, handshakes atomic.Int64
	seen := map[string]bool{}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		handshakes.Add(1)
		if err != nil {
			failures.Add(1)
			t.Log(err)
			continue
		}
		seen[c.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if failures.Load() != 0 {
		t.Errorf("%d of %d handshakes failed during rotation", failures.Load(), handshakes.Load())
	}
	if len(seen) < 2 || !seen[first] {
		t.Errorf("served serials %v: want the first and at least one renewal", seen)
	}
}

// runSM runs s until the test ends and waits for it to return.
func runSM(t *testing.T, s *manager) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Start(t.Context())
	}()
	t.Cleanup(func() { <-done }) // t.Context is cancelled before cleanups run
}

// TestCABundlePatch: the patch sets only the caBundles that differ, and
// carries the resourceVersion read, so a concurrent change is a conflict.
func TestCABundlePatch(t *testing.T) {
	t.Parallel()
	ca := []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
	m := mwc("meshinject-default")
	m.ResourceVersion = "42"
	m.Webhooks[0].ClientConfig.CABundle = ca
	patch, err := caBundlePatch(m, ca)
	if err != nil {
		t.Fatal(err)
	}
	var ops []struct {
		Op, Path string
		Value    any
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"add","path":"/metadata/resourceVersion","value":"42"},{"op":"add","path":"/webhooks/1/clientConfig/caBundle","value":"` +
		base64.StdEncoding.EncodeToString(ca) + `"}]`
	if string(patch) != want {
		t.Errorf("patch %s\nwant  %s", patch, want)
	}
	m.Webhooks[1].ClientConfig.CABundle = ca
	if patch, err := caBundlePatch(m, ca); err != nil || patch != nil {
		t.Errorf("with every caBundle in place: patch %s, %v; want none", patch, err)
	}
}

// TestSelfManagedTakesOverForeignSecret: a Secret of the same name that
// self-managed TLS did not write (cert-manager's, kept after a move to
// self-managed TLS: no CA key) is replaced by a CA and certificate of its
// own instead of failing the start.
func TestSelfManagedTakesOverForeignSecret(t *testing.T) {
	t.Parallel()
	foreignCA, err := certs.NewCA(certs.Options{CommonName: "cert-manager-ca"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := certs.NewServing(foreignCA, certs.Options{DNSNames: []string{"meshinject.meshinject.svc"}})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "meshinject-tls", Namespace: "meshinject"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, keyCACert: foreignCA.CertPEM},
	})
	s := newSM(t, client, Options{})
	if err := s.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	sec, err := client.CoreV1().Secrets("meshinject").Get(t.Context(), "meshinject-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Data[keyCAKey]) == 0 || bytes.Equal(sec.Data[keyCACert], foreignCA.CertPEM) || sec.Labels["app.kubernetes.io/managed-by"] != "meshinject" {
		t.Fatalf("the Secret was not taken over: labels %v, keys %d", sec.Labels, len(sec.Data))
	}
	if !bytes.Equal(s.ca.Load().CertPEM, sec.Data[keyCACert]) || !bytes.Equal(s.leaf.Load().CertPEM, sec.Data[corev1.TLSCertKey]) {
		t.Error("the manager serves other than the Secret holds")
	}
}
