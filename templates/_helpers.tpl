{{- /*
  Named templates shared by the built-in templates. Each takes the template
  data (.) unless noted; list items are indented for a Pod spec list.
*/ -}}

{{- define "resources" }}
    {{- /* takes .Settings */ -}}
    {{- if or .Resources.Requests .Resources.Limits }}
    resources:
      {{- with .Resources.Limits }}
      limits:
        {{- range $k, $v := . }}
        {{ $k }}: {{ quote $v }}
        {{- end }}
      {{- end }}
      {{- with .Resources.Requests }}
      requests:
        {{- range $k, $v := . }}
        {{ $k }}: {{ quote $v }}
        {{- end }}
      {{- end }}
    {{- end }}
{{- end }}

{{- define "proxy-env" }}
    {{- /* the proxy environment the engine computed, in Istio's order */}}
    env:
    {{- range .Settings.Env }}
    - {{ toJSON . }}
    {{- end }}
{{- end }}

{{- define "proxy-readiness" }}
    {{- $s := .Settings }}
    readinessProbe:
      httpGet:
        path: /healthz/ready
        port: 15021
      initialDelaySeconds: {{ $s.ReadinessInitialDelaySeconds }}
      periodSeconds: {{ $s.ReadinessPeriodSeconds }}
      timeoutSeconds: 3
      failureThreshold: {{ $s.ReadinessFailureThreshold }}
{{- end }}

{{- define "proxy-volume-mounts" }}
    {{- /* takes (dict "Settings" .Settings "CRL" bool) */ -}}
    {{- $s := .Settings }}
    volumeMounts:
    - name: workload-socket
      mountPath: /var/run/secrets/workload-spiffe-uds
    - name: credential-socket
      mountPath: /var/run/secrets/credential-uds
    - name: workload-certs
      mountPath: /var/run/secrets/workload-spiffe-credentials
    - name: istiod-ca-cert
      mountPath: /var/run/secrets/istio
    {{- if .CRL }}
    - name: istio-ca-crl
      mountPath: /var/run/secrets/istio/crl
    {{- end }}
    - name: istio-data
      mountPath: /var/lib/istio/data
    {{- if $s.BootstrapOverride }}
    - name: custom-bootstrap-volume
      mountPath: /etc/istio/custom-bootstrap
    {{- end }}
    - name: istio-envoy
      mountPath: /etc/istio/proxy
    - name: istio-token
      mountPath: /var/run/secrets/tokens
    - name: istio-podinfo
      mountPath: /etc/istio/pod
    {{- range $s.UserVolumeMounts }}
    - {{ toJSON . }}
    {{- end }}
{{- end }}

{{- define "proxy-volumes" }}
  {{- /* takes (dict "Settings" .Settings "CRL" bool) */ -}}
  {{- $s := .Settings }}
  volumes:
  - name: workload-socket
  - name: credential-socket
  - name: workload-certs
  {{- if $s.BootstrapOverride }}
  - name: custom-bootstrap-volume
    configMap:
      name: {{ quote $s.BootstrapOverride }}
  {{- end }}
  {{- template "common-volumes" $s }}
  {{- if .CRL }}
  - name: istio-ca-crl
    configMap:
      name: istio-ca-crl
      optional: true
  {{- end }}
  {{- range $s.UserVolumes }}
  - {{ toJSON . }}
  {{- end }}
  {{- with $s.ImagePullSecrets }}
  imagePullSecrets:
  {{- range . }}
  - name: {{ quote . }}
  {{- end }}
  {{- end }}
{{- end }}

{{- define "common-volumes" }}
  {{- /* takes .Settings: the volumes every proxy template ends with */}}
  - name: istio-envoy
    emptyDir:
      medium: Memory
  - name: istio-data
    emptyDir: {}
  - name: istio-podinfo
    downwardAPI:
      items:
      - path: labels
        fieldRef:
          fieldPath: metadata.labels
      - path: annotations
        fieldRef:
          fieldPath: metadata.annotations
  - name: istio-token
    projected:
      sources:
      - serviceAccountToken:
          audience: {{ quote .TokenAudience }}
          expirationSeconds: 43200
          path: istio-token
  - name: istiod-ca-cert
    configMap:
      name: istio-ca-root-cert
{{- end }}
