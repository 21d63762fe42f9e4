//go:build node

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshinject/meshinject/certs"
)

// node is the node tier's cluster: its namespaces, the control plane's
// credentials and the processes it started, in start order.
type node struct {
	ns         *namespaces
	work       string
	bin        string // Kubernetes binaries (E2E_K8S_ASSETS)
	ca         *certs.Bundle
	cgroupRoot string // kubelet's --cgroup-root: under the test's own cgroup
	tokens     map[string]string
	procs      []*process
	closers    []func() error // what the suite serves for the node (the registry)
}

// users of the API server: token name, user, groups. Kubelet's user is
// what the Node authorizer expects; the others have the roles the API
// server bootstraps for them.
var users = []struct{ name, user, groups string }{
	{"admin", "node-admin", "system:masters"},
	{"kubelet", "system:node:" + nodeName, "system:nodes"},
	{"kube-controller-manager", "system:kube-controller-manager", ""},
	{"kube-scheduler", "system:kube-scheduler", ""},
	{"kube-proxy", "system:kube-proxy", ""},
}

// writeCredentials writes the CA, the API server's serving certificate, the
// service-account signing key, the token file and a kubeconfig per user.
func (n *node) writeCredentials() error {
	pki := filepath.Join(n.work, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	var err error
	if n.ca, err = certs.NewCA(certs.Options{CommonName: "meshinject-node-ca"}); err != nil {
		return err
	}
	serving, err := certs.NewServing(n.ca, certs.Options{
		CommonName:  "kube-apiserver",
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", nodeName},
		IPAddresses: []net.IP{net.ParseIP(nodeIP), net.ParseIP(apiServerIP), net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return err
	}
	if err := certs.WriteDir(pki, serving, n.ca.CertPEM); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	n.tokens = map[string]string{}
	var lines []string
	for i, u := range users {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		n.tokens[u.name] = hex.EncodeToString(b)
		lines = append(lines, fmt.Sprintf("%s,%s,uid-%d,%q", n.tokens[u.name], u.user, i, u.groups))
		if _, err := writeKubeconfig(u.name, n.restConfig(u.name), ""); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// restConfig is user's client configuration; its connections are made
// inside the network namespace, where the API server listens.
func (n *node) restConfig(user string) *rest.Config {
	return &rest.Config{
		Host:            fmt.Sprintf("https://%s:%d", nodeIP, apiPort),
		BearerToken:     n.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAData: n.ca.CertPEM},
		Dial:            n.ns.dial,
		QPS:             200,
		Burst:           400,
	}
}

func (n *node) kubeconfig(user string) string { return filepath.Join(n.work, user+".kubeconfig") }

// start starts bin in the namespaces, its output in <name>.log.
func (n *node) start(name, bin string, args ...string) error {
	p, err := startProcessEnv(name, "", nil, "nsenter",
		append([]string{"-t", strconv.Itoa(n.ns.pid), "--net", "--mount", "--", bin}, args...)...)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return nil
}

// startControlPlane starts etcd and kube-apiserver and waits for /readyz,
// then kube-controller-manager and kube-scheduler.
func (n *node) startControlPlane(ctx context.Context) error {
	pki := filepath.Join(n.work, "pki")
	if err := n.start("etcd", filepath.Join(n.bin, "etcd"), "--data-dir="+filepath.Join(n.work, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if err := n.start("kube-apiserver", filepath.Join(n.bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0", fmt.Sprintf("--secure-port=%d", apiPort),
		"--advertise-address="+nodeIP, "--service-cluster-ip-range="+serviceCIDR,
		"--tls-cert-file="+filepath.Join(pki, certs.CertFile), "--tls-private-key-file="+filepath.Join(pki, certs.KeyFile),
		"--token-auth-file="+filepath.Join(pki, "tokens.csv"), "--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.key"), "--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true"); err != nil {
		return err
	}
	if err := n.waitAPIServer(ctx); err != nil {
		return err
	}
	if err := n.start("kube-controller-manager", filepath.Join(n.bin, "kube-controller-manager"),
		"--kubeconfig="+n.kubeconfig("kube-controller-manager"), "--leader-elect=false", "--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"), "--root-ca-file="+filepath.Join(pki, certs.CAFile),
		"--bind-address=127.0.0.1", "--flex-volume-plugin-dir="+filepath.Join(n.work, "node", "volume-plugins")); err != nil {
		return err
	}
	return n.start("kube-scheduler", filepath.Join(n.bin, "kube-scheduler"),
		"--kubeconfig="+n.kubeconfig("kube-scheduler"), "--leader-elect=false", "--bind-address=127.0.0.1")
}

func (n *node) waitAPIServer(ctx context.Context) error {
	rt, err := rest.TransportFor(n.restConfig("admin"))
	if err != nil {
		return err
	}
	c := http.Client{Transport: rt, Timeout: 2 * time.Second}
	var last string
	err = poll(ctx, wait, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s:%d/readyz", nodeIP, apiPort), nil)
		resp, err := c.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	})
	if err == nil {
		return nil
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %s\n%s", wait, last, n.logTail("kube-apiserver"))
}
