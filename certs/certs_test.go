package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestServingChain(t *testing.T) {
	t.Parallel()
	ca, err := NewCA(Options{CommonName: "test-ca"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServing(ca, Options{DNSNames: []string{"meshinject.meshinject.svc"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Duration: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, name := range []string{"meshinject.meshinject.svc", "127.0.0.1"} {
		if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM); err != nil {
		t.Errorf("not a usable key pair: %v", err)
	}
	if got := RenewAt(srv.Cert); got.Sub(srv.Cert.NotBefore) < 2*time.Hour || got.After(srv.Cert.NotAfter) {
		t.Errorf("RenewAt = %v for %v..%v, want two thirds through", got, srv.Cert.NotBefore, srv.Cert.NotAfter)
	}
	if _, err := Parse(srv.CertPEM, ca.KeyPEM); err == nil {
		t.Error("Parse accepted a key that does not match")
	}
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDir(dir, srv, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CertFile, KeyFile, CAFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
