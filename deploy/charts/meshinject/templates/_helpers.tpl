{{/*
meshinject.name is the name of this revision's objects: meshinject, or
meshinject-<revision>. The release name does not change it, so the objects
are those deploy/ (kustomize) makes, and two revisions never collide.
*/}}
{{- define "meshinject.name" -}}
meshinject{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}
{{- end }}

{{/* meshinject.revision is the revision as labels carry it. */}}
{{- define "meshinject.revision" -}}
{{ .Values.revision | default "default" }}
{{- end }}

{{/* meshinject.labels are the labels of every object. */}}
{{- define "meshinject.labels" -}}
app.kubernetes.io/name: meshinject
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* meshinject.tlsSecret is the serving certificate's Secret. */}}
{{- define "meshinject.tlsSecret" -}}
{{ .Values.tls.secretName | default (printf "%s-tls" (include "meshinject.name" .)) }}
{{- end }}

{{/* meshinject.webhookName is the MutatingWebhookConfiguration's name. */}}
{{- define "meshinject.webhookName" -}}
meshinject-sidecar-injector{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}
{{- end }}

{{/*
meshinject.webhookAnnotations ask cert-manager's cainjector for the
caBundle in cert-manager mode.
*/}}
{{- define "meshinject.webhookAnnotations" -}}
{{- if eq .Values.tls.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "meshinject.name" . }}-serving
{{- end }}
{{- end }}

{{/*
meshinject.entry is the part every webhook entry shares; its argument is
(dict "root" $ "name" "<entry name>").
*/}}
{{- define "meshinject.entry" -}}
{{- $v := .root.Values -}}
- name: {{ .name }}
  clientConfig:
    {{- if $v.webhook.url }}
    url: {{ $v.webhook.url | quote }}
    {{- else }}
    service:
      name: {{ include "meshinject.name" .root }}
      namespace: {{ .root.Release.Namespace }}
      path: /inject
      port: 443
    {{- end }}
    {{- if eq $v.tls.mode "secret" }}
    caBundle: {{ $v.tls.caBundle | quote }}
    {{- end }}
  rules:
  - operations:
    - CREATE
    apiGroups:
    - ""
    apiVersions:
    - v1
    resources:
    - pods
  sideEffects: None
  failurePolicy: {{ $v.webhook.failurePolicy }}
  admissionReviewVersions:
  - v1
  - v1beta1
  timeoutSeconds: {{ $v.webhook.timeoutSeconds }}
  reinvocationPolicy: {{ $v.sidecarInjectorWebhook.reinvocationPolicy }}
  {{- with $v.webhook.matchConditions }}
  matchConditions:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
meshinject.revisionEntries are the two entries of a revision or tag: a
namespace labelled istio.io/rev=<rev>, or a pod so labelled in a namespace
with neither injection label. Argument: (dict "root" $ "rev" "<rev or tag>").
*/}}
{{- define "meshinject.revisionEntries" -}}
{{ include "meshinject.entry" (dict "root" .root "name" "rev.namespace.meshinject.istio.io") }}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: In
      values:
      - {{ .rev }}
    - key: istio-injection
      operator: DoesNotExist
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      - {{ .root.Release.Namespace }}
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
{{ include "meshinject.entry" (dict "root" .root "name" "rev.object.meshinject.istio.io") }}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: DoesNotExist
    - key: istio-injection
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
    - key: istio.io/rev
      operator: In
      values:
      - {{ .rev }}
{{- end }}

{{/*
meshinject.defaultEntries are the entries only the default revision (or
the tag "default") has: istio-injection=enabled namespaces,
sidecar.istio.io/inject=true pods in unlabelled namespaces and, with
enableNamespacesByDefault, every other pod of an unlabelled namespace.
Argument: the root context.
*/}}
{{- define "meshinject.defaultEntries" -}}
{{ include "meshinject.entry" (dict "root" . "name" "namespace.meshinject.istio.io") }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: In
      values:
      - enabled
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      - {{ .Release.Namespace }}
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
{{ include "meshinject.entry" (dict "root" . "name" "object.meshinject.istio.io") }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: In
      values:
      - "true"
    - key: istio.io/rev
      operator: DoesNotExist
{{- if .Values.sidecarInjectorWebhook.enableNamespacesByDefault }}
{{ include "meshinject.entry" (dict "root" . "name" "auto.meshinject.istio.io") }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      - kube-system
      - kube-public
      - kube-node-lease
      - {{ .Release.Namespace }}
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
{{- end }}
{{- end }}

{{/*
meshinject.scrape is how a ServiceMonitor or PodMonitor scrapes /metrics:
over HTTPS with the metrics-scraper token when metrics.secure, and always with
job="meshinject[-<revision>]", which the alerts and the dashboard select.
*/}}
{{- define "meshinject.scrape" -}}
path: /metrics
{{- if .Values.metrics.secure }}
# The metrics server's certificate is self-signed; the token is the
# metrics-scraper ServiceAccount's, which may get /metrics.
scheme: https
tlsConfig:
  insecureSkipVerify: true
authorization:
  type: Bearer
  credentials:
    name: {{ include "meshinject.name" . }}-metrics-scraper
    key: token
{{- end }}
relabelings:
- action: replace
  targetLabel: job
  replacement: {{ include "meshinject.name" . }}
{{- end }}
