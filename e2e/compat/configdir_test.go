//go:build compat

package compat

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshinject/meshinject/cmd/meshinject/app/reload"
	"github.com/meshinject/meshinject/internal/inject"
)

// TestConfigDirIstioConfigMap serves Istio's istio-sidecar-injector and
// istio ConfigMaps as the webhook's --config-dir (config as YAML with the
// legacy template: sentinel, values as the chart's JSON, mesh): every
// template of the chart, waypoint and gateway ones included, must load and
// render, and a pod must be injected with the chart's proxy image.
func TestConfigDirIstioConfigMap(t *testing.T) {
	for _, is := range istios(t) {
		t.Run(is.version, func(t *testing.T) {
			r, err := reload.New(reload.Options{Dir: is.dir})
			if err != nil {
				t.Fatalf("Istio's injector ConfigMap as --config-dir: %v", err)
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop", Labels: map[string]string{"app": "app"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			}
			res, err := r.Engine().Inject(inject.Request{Pod: pod})
			if err != nil {
				t.Fatal(err)
			}
			var image string
			for _, c := range res.Pod.Spec.Containers {
				if c.Name == inject.ProxyContainerName {
					image = c.Image
				}
			}
			if want := "docker.io/istio/proxyv2:" + compatTag(t); image != want {
				t.Errorf("proxy image %q, want %q (the chart's values)", image, want)
			}
		})
	}
}
