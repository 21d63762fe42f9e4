//go:build node

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// corednsImage is CoreDNS built by e2e/tools/build.sh coredns and imported
// by the suite (make node-images).
const corednsImage = "localhost/meshinject-e2e/coredns:1"

// corednsManifest is the cluster's DNS: CoreDNS answering for
// cluster.local from the API server, forwarding nothing (there is no
// upstream: no query leaves the namespace), behind the Service kube-dns at
// clusterDNS. It listens on 1053 so that it runs as nonroot without
// capabilities; the Service maps 53 to it.
const corednsManifest = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
      containers:
      - name: coredns
        image: ` + corednsImage + `
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: ` + clusterDNS + `
  selector:
    k8s-app: kube-dns
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
`

// waitNodeReady waits for the node's Ready condition.
func (n *node) waitNodeReady(ctx context.Context) error {
	var last string
	err := poll(ctx, wait, func() bool {
		node, err := suite.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("%s: %s", c.Status, c.Message)
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready: %s\n%s", nodeName, last, n.logTail("kubelet"))
	}
	return nil
}

// startDNS applies corednsManifest and waits for CoreDNS to be Ready.
func (n *node) startDNS(ctx context.Context) error {
	path := filepath.Join(n.work, "coredns.yaml")
	if err := os.WriteFile(path, []byte(corednsManifest), 0o644); err != nil {
		return err
	}
	if out, err := kubectlContext(ctx, "apply", "-f", path); err != nil {
		return fmt.Errorf("apply CoreDNS: %w\n%s", err, out)
	}
	if out, err := kubectlContext(ctx, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=60s"); err != nil {
		pods, _ := kubectlContext(ctx, "-n", "kube-system", "get", "pods", "-o", "wide")
		ev, _ := kubectlContext(ctx, "-n", "kube-system", "get", "events")
		return fmt.Errorf("CoreDNS not ready: %w\n%s\n%s\n%s", err, out, pods, ev)
	}
	return nil
}

// logTail returns the end of the log of the node's process name.
func (n *node) logTail(name string) string {
	for _, p := range n.procs {
		if p.name == name {
			return strings.TrimSpace(p.tail())
		}
	}
	return ""
}

// poll calls cond every 200ms until it returns true, failing after timeout.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
