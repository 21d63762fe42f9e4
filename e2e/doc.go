// Package e2e holds meshinject's end-to-end suite (build tag e2e): pods
// created through a real kube-apiserver's admission chain, with the
// MutatingWebhookConfiguration and ValidatingAdmissionPolicy from deploy/.
//
// `make test-e2e` builds kube-apiserver, etcd, kube-controller-manager,
// kubectl and a trimmed cert-manager from the Go module proxy (e2e/tools),
// starts them with controller-runtime's envtest and runs `meshinject serve`
// as subprocesses on 127.0.0.1 (deploy/overlays/e2e-local). `make e2e-kind`
// runs the scenarios that need no process control against a kind cluster
// where deploy/overlays/kind is installed (E2E_EXISTING_CLUSTER=true).
package e2e
