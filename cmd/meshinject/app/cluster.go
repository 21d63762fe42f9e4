package app

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster selects the cluster of the commands that read or write one.
type cluster struct {
	// Kubeconfig and Context select the cluster. Default: the usual
	// kubeconfig rules ($KUBECONFIG, ~/.kube/config) and its context.
	Kubeconfig, Context string
}

func (c *cluster) flags(f *pflag.FlagSet) {
	kubeconfigFlag(f, &c.Kubeconfig, "$KUBECONFIG, else ~/.kube/config")
	contextFlag(f, &c.Context)
}

// client is a client of the cluster and the context's namespace (default
// when it names none).
func (c *cluster) client() (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", fmt.Errorf("cluster access: no kubeconfig found ($KUBECONFIG, ~/.kube/config): name one with --kubeconfig (and --context)")
	}
	if err != nil {
		return nil, "", fmt.Errorf("cluster access: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", err
	}
	client, err := kubernetes.NewForConfig(cfg)
	return client, ns, err
}
