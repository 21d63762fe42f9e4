package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshinject/meshinject/templates"
)

// samplePod is what Validate renders every template against: an app with a
// port, a probe and a pod-template-hash owner, like most real pods.
func samplePod(template string) *corev1.Pod {
	ctrl := true
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "sample-6b746f74dc-", Namespace: "default",
			Labels:      map[string]string{"app": "sample", "version": "v1", "pod-template-hash": "6b746f74dc"},
			Annotations: map[string]string{AnnotationTemplates: template},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
				Name: "sample-6b746f74dc", UID: "00000000-0000-4000-8000-000000000000", Controller: &ctrl}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/sample:1",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
		}}},
	}
}

// gatewayControllerTemplates are the templates of Istio's injector
// ConfigMap that istiod's gateway controller renders into Deployments for
// Gateway API gateways and waypoints, from data other than a pod's. They
// load with the rest (so Istio's ConfigMap loads as it is), but a pod that
// asks for one is refused.
var gatewayControllerTemplates = map[string]bool{
	"waypoint": true, "kube-gateway": true, "agentgateway": true, "agentgateway-waypoint": true,
}

// Validate injects a sample pod with every configured template, classic
// and native, so that a config whose templates parse but fail to render or
// produce an invalid Pod is refused before it serves.
func (e *Engine) Validate() error {
	for _, name := range templates.Names(e.cfg.Templates) {
		if gatewayControllerTemplates[name] {
			continue // parsed at load; never rendered for a pod
		}
		for _, native := range []bool{false, true} {
			if _, err := e.Inject(Request{Pod: samplePod(name), ForcePolicy: true, NativeSidecars: native}); err != nil {
				return fmt.Errorf("template %s does not render for a sample pod: %w", name, err)
			}
		}
	}
	return nil
}
