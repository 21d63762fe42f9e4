//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestMetricsSecure: with --metrics-secure, /metrics answers over HTTPS
// only a client the API server authenticates and authorizes (the RBAC of
// deploy/overlays/metrics-secure): no token 401, a ServiceAccount without
// meshinject-metrics-reader 403, with it 200 and meshinject's metrics.
func TestMetricsSecure(t *testing.T) {
	needsLocal(t)
	if out, err := kubectl("apply", "-f", filepath.Join(suite.repo, "deploy/overlays/metrics-secure/rbac.yaml")); err != nil {
		t.Fatalf("apply metrics RBAC: %v\n%s", err, out)
	}
	sa, err := writeKubeconfig("meshinject-metrics", suite.cfg, "system:serviceaccount:meshinject:meshinject")
	if err != nil {
		t.Fatal(err)
	}
	s, err := startServer("metrics-secure", defaultPort+7, []string{"--metrics-secure", "--kubeconfig=" + sa})
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	url := "https://127.0.0.1:" + strconv.Itoa(s.port-2000) + "/metrics"
	ns := namespace(t, "scraper", nil)
	token := func(sa string) string {
		createServiceAccount(t, ns, sa)
		tok, err := suite.client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Status.Token
	}
	// Bound before any scrape: the filter caches a denial for a while.
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-reader-" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "meshinject-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: ns}},
	}
	if _, err := suite.client.RbacV1().ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = suite.client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	reader, nobody := token("prometheus"), token("nobody")
	// The metrics server starts beside the webhook (readiness does not
	// wait for it): wait for its first answer.
	eventually(t, wait, "no token: 401", func() error {
		if code, _ := scrape(t, url, ""); code != http.StatusUnauthorized {
			return &httpStatus{code}
		}
		return nil
	})
	if code, _ := scrape(t, url, nobody); code != http.StatusForbidden {
		t.Errorf("a ServiceAccount without meshinject-metrics-reader: %d, want 403", code)
	}
	eventually(t, wait, "the reader gets /metrics", func() error {
		code, body := scrape(t, url, reader)
		if code != http.StatusOK || !strings.Contains(body, "meshinject_config_stale") {
			return &httpStatus{code}
		}
		return nil
	})
}

type httpStatus struct{ code int }

func (h *httpStatus) Error() string { return "HTTP " + strconv.Itoa(h.code) }

// scrape GETs url with the bearer token (none when empty), trusting any
// certificate (the metrics server's own, self-signed).
func scrape(t *testing.T, url, token string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // the server's self-signed certificate
	}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error() // not listening yet
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
