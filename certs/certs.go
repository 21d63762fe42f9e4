// Package certs makes and reads the webhook's TLS material with
// cert-manager's pki helpers: a CA, serving certificates signed by it, and
// the time a serving certificate is due for renewal (two thirds of its
// lifetime, cert-manager's default).
package certs

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cert-manager/cert-manager/pkg/util/pki"
)

// File names, as in a kubernetes.io/tls Secret.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// Bundle is a certificate with its private key, PEM-encoded.
type Bundle struct {
	CertPEM []byte
	KeyPEM  []byte
	// Cert is CertPEM parsed.
	Cert *x509.Certificate
}

// Options describe a certificate to make.
type Options struct {
	// CommonName of the subject. Default "meshinject".
	CommonName string
	// DNSNames and IPAddresses are the serving names (ignored for a CA).
	DNSNames    []string
	IPAddresses []net.IP
	// Duration is the validity. Default: 10 years for a CA, 1 year for a
	// serving certificate.
	Duration time.Duration
	// Now is the issue time. Default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults(ca bool) {
	if o.CommonName == "" {
		o.CommonName = "meshinject"
	}
	if o.Duration == 0 {
		o.Duration = 365 * 24 * time.Hour
		if ca {
			o.Duration = 10 * 365 * 24 * time.Hour
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// NewCA makes a self-signed CA.
func NewCA(opts Options) (*Bundle, error) {
	opts.setDefaults(true)
	return issue(opts, nil, true)
}

// NewServing makes a serving certificate signed by ca.
func NewServing(ca *Bundle, opts Options) (*Bundle, error) {
	if ca == nil {
		return nil, errors.New("certs: NewServing needs a CA")
	}
	opts.setDefaults(false)
	return issue(opts, ca, false)
}

func issue(opts Options, ca *Bundle, isCA bool) (*Bundle, error) {
	key, err := pki.GenerateECPrivateKey(pki.ECCurve256)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	// Backdate a little to tolerate clock skew, by at most a tenth of the
	// lifetime so the renewal time stays two thirds through it.
	skew := min(time.Minute, opts.Duration/10)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.CommonName},
		NotBefore:             now.Add(-skew),
		NotAfter:              now.Add(opts.Duration),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = opts.DNSNames, opts.IPAddresses
	}
	issuerCert, signer := tmpl, any(key)
	if ca != nil {
		caKey, err := pki.DecodePrivateKeyBytes(ca.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("decode CA key: %w", err)
		}
		issuerCert, signer = ca.Cert, caKey
	}
	certPEM, cert, err := pki.SignCertificate(tmpl, issuerCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err := pki.EncodePKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return &Bundle{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

// Parse reads a bundle from PEM, checking that the key matches.
func Parse(certPEM, keyPEM []byte) (*Bundle, error) {
	cert, err := pki.DecodeX509CertificateBytes(certPEM)
	if err != nil {
		return nil, fmt.Errorf("decode certificate: %w", err)
	}
	key, err := pki.DecodePrivateKeyBytes(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	if ok, err := pki.PublicKeyMatchesCertificate(key.Public(), cert); err != nil || !ok {
		return nil, errors.New("the private key does not match the certificate")
	}
	return &Bundle{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

// RenewAt is when cert is due for renewal: two thirds through its lifetime.
func RenewAt(cert *x509.Certificate) time.Time {
	t, err := pki.RenewalTime(cert.NotBefore, cert.NotAfter, nil, nil, nil)
	if err != nil || t == nil {
		return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)
	}
	return t.Time
}

// WriteDir writes b (and caPEM, when given) into dir as tls.crt, tls.key and
// ca.crt. Each file is written to a temporary name and renamed, so a reader
// never sees a partial file; the key is written last so a watcher that
// reloads on it sees a matching pair.
func WriteDir(dir string, b *Bundle, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAFile, caPEM, 0o644}, {CertFile, b.CertPEM, 0o644}, {KeyFile, b.KeyPEM, 0o600}}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}
