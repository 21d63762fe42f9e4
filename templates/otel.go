package templates

import (
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// OtelResourceAttributes is the value of OTEL_RESOURCE_ATTRIBUTES for a pod,
// following OpenTelemetry's Kubernetes service attributes, or "" unless an
// OpenTelemetry extension provider of mesh asks for semantic-convention
// enrichment. Each attribute comes from the pod's
// resource.opentelemetry.io/<attribute> annotation when set:
//
//   - service.namespace: else the namespace;
//   - service.version: else the app.kubernetes.io/version label, else the
//     image tag and digest ("tag@digest") of a single container;
//   - service.instance.id: else <namespace>.$(POD_NAME).<first container>,
//     left for the kubelet to expand since the pod name is not known yet.
func OtelResourceAttributes(mesh *meshv1alpha1.MeshConfig, annotations, labels map[string]string, namespace string, containers []corev1.Container) string {
	if !otelEnrichment(mesh) {
		return ""
	}
	const prefix = "resource.opentelemetry.io/"
	var attrs []string
	add := func(name, value string) { attrs = append(attrs, name+"="+value) }

	if v := annotations[prefix+"service.namespace"]; v != "" {
		add("service.namespace", v)
	} else if namespace != "" {
		add("service.namespace", namespace)
	}

	if v := annotations[prefix+"service.version"]; v != "" {
		add("service.version", v)
	} else if v := labels["app.kubernetes.io/version"]; v != "" {
		add("service.version", v)
	} else if len(containers) == 1 {
		if v := imageVersion(containers[0].Image); v != "" {
			add("service.version", v)
		}
	}

	if v := annotations[prefix+"service.instance.id"]; v != "" {
		add("service.instance.id", v)
	} else if len(containers) > 0 {
		add("service.instance.id", namespace+".$(POD_NAME)."+containers[0].Name)
	}
	return strings.Join(attrs, ",")
}

func otelEnrichment(mesh *meshv1alpha1.MeshConfig) bool {
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetOpentelemetry().GetServiceAttributeEnrichment() == meshv1alpha1.MeshConfig_ExtensionProvider_OTEL_SEMANTIC_CONVENTIONS {
			return true
		}
	}
	return false
}

// imageVersion is "tag@digest", "digest" or "tag" of an image reference
// [registry[:port]/]name[:tag][@digest], whichever parts it has.
func imageVersion(image string) string {
	ref, digest, _ := strings.Cut(image, "@")
	tag := ""
	if c := strings.LastIndex(ref, ":"); c > strings.LastIndex(ref, "/") {
		tag = ref[c+1:]
	}
	switch {
	case tag != "" && digest != "":
		return tag + "@" + digest
	case digest != "":
		return digest
	}
	return tag
}
