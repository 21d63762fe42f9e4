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
    {{- /* takes (dict "Settings" .Settings "Sidecar" bool): the sidecar's
      mounts add the CRL, Lightstep's CA and the user's mounts */ -}}
    {{- $s := .Settings }}
    volumeMounts:
    - name: workload-socket
      mountPath: /var/run/secrets/workload-spiffe-uds
    - name: credential-socket
      mountPath: /var/run/secrets/credential-uds
    {{- template "workload-certs-mount" $s }}
    {{- if $s.Certs.IstiodCA }}
    - name: istiod-ca-cert
      mountPath: /var/run/secrets/istio
    {{- if .Sidecar }}
    - name: istio-ca-crl
      mountPath: /var/run/secrets/istio/crl
    {{- end }}
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
    {{- template "mtls-certs-mount" $s }}
    - name: istio-podinfo
      mountPath: /etc/istio/pod
    {{- if .Sidecar }}
    {{- with $s.Certs.LightstepDir }}
    - name: lightstep-certs
      mountPath: {{ quote . }}
      readOnly: true
    {{- end }}
    {{- range $s.UserVolumeMounts }}
    - {{ toJSON . }}
    {{- end }}
    {{- end }}
{{- end }}

{{- define "workload-certs-mount" }}
    {{- /* takes .Settings */ -}}
    {{- if .Certs.GKE }}
    - name: gke-workload-certificate
      mountPath: /var/run/secrets/workload-spiffe-credentials
      readOnly: true
    {{- else }}
    - name: workload-certs
      mountPath: /var/run/secrets/workload-spiffe-credentials
    {{- end }}
{{- end }}

{{- define "mtls-certs-mount" }}
    {{- /* takes .Settings */ -}}
    {{- if .Certs.MtlsSecret }}
    - name: istio-certs
      mountPath: /etc/certs/
      readOnly: true
    {{- end }}
{{- end }}

{{- define "workload-certs-volume" }}
  {{- /* takes .Settings */ -}}
  {{- if .Certs.GKE }}
  - name: gke-workload-certificate
    csi:
      driver: workloadcertificates.security.cloud.google.com
  {{- else }}
  - name: workload-certs
  {{- end }}
{{- end }}

{{- define "proxy-volumes" }}
  {{- /* takes (dict "Settings" .Settings "Sidecar" bool) */ -}}
  {{- $s := .Settings }}
  volumes:
  - name: workload-socket
  - name: credential-socket
  {{- template "workload-certs-volume" $s }}
  {{- if $s.BootstrapOverride }}
  - name: custom-bootstrap-volume
    configMap:
      name: {{ quote $s.BootstrapOverride }}
  {{- end }}
  {{- template "common-volumes" $s }}
  {{- if .Sidecar }}
  - name: istio-ca-crl
    configMap:
      name: {{ quote $s.Certs.CRL }}
      optional: true
  {{- end }}
  {{- template "mtls-certs-volume" $s }}
  {{- if .Sidecar }}
  {{- range $s.UserVolumes }}
  - {{ toJSON . }}
  {{- end }}
  {{- if $s.Certs.LightstepDir }}
  - name: lightstep-certs
    secret:
      optional: true
      secretName: lightstep.cacert
  {{- end }}
  {{- end }}
  {{- template "image-pull-secrets" $s }}
{{- end }}

{{- define "image-pull-secrets" }}
  {{- /* takes .Settings */ -}}
  {{- with .ImagePullSecrets }}
  imagePullSecrets:
  {{- range . }}
  - name: {{ quote . }}
  {{- end }}
  {{- end }}
{{- end }}

{{- define "mtls-certs-volume" }}
  {{- /* takes .Settings */ -}}
  {{- with .Certs.MtlsSecret }}
  - name: istio-certs
    secret:
      optional: true
      secretName: {{ quote . }}
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
  {{- template "istiod-ca-volume" . }}
{{- end }}

{{- define "istiod-ca-volume" }}
  {{- /* takes .Settings: istiod's root certificate, when istiod is the
    certificate provider */}}
  {{- if .Certs.IstiodCA }}
  - name: istiod-ca-cert
    {{- if .Certs.ClusterTrustBundle }}
    projected:
      sources:
      - clusterTrustBundle:
          name: {{ quote .Certs.RootCert }}
          path: root-cert.pem
    {{- else }}
    configMap:
      name: {{ quote .Certs.RootCert }}
    {{- end }}
  {{- end }}
{{- end }}

{{- define "seccomp" }}
      {{- /* takes .Settings: a container's seccomp profile, under its
        securityContext */}}
      {{- with .SeccompProfile }}
      seccompProfile: {{ toJSON . }}
      {{- end }}
{{- end }}
