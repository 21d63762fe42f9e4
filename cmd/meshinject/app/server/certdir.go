package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/certs/selftls"
	"github.com/meshinject/meshinject/internal/promreg"
)

// newCertDirWatcher watches tls.crt and tls.key in dir with controller-
// runtime's certwatcher and reports each loaded certificate's expiry.
func newCertDirWatcher(dir string, reg prometheus.Registerer, log logr.Logger) (*certwatcher.CertWatcher, error) {
	cw, err := certwatcher.New(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("--cert-dir %s: %w", dir, err)
	}
	expiry := selftls.NewExpiryGauge()
	if err := promreg.Register(reg, &expiry); err != nil {
		return nil, fmt.Errorf("register certificate metrics: %w", err)
	}
	report := func(c tls.Certificate) {
		leaf := c.Leaf
		if leaf == nil && len(c.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(c.Certificate[0])
		}
		if leaf == nil {
			return
		}
		expiry.Set(float64(leaf.NotAfter.Unix()))
		log.Info("serving certificate loaded", "notAfter", leaf.NotAfter, "expiresIn", time.Until(leaf.NotAfter).Round(time.Minute).String())
	}
	cw.RegisterCallback(report) // also reports the certificate loaded now
	return cw, nil
}

// abortWatcher closes the fsnotify watcher certwatcher.New opened (it has
// no Close): Start with an ended context adds its watches, starts its
// event loop and closes the watcher at once, which ends the loop.
func abortWatcher(ctx context.Context, cw *certwatcher.CertWatcher) {
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	_ = cw.Start(ctx)
}
