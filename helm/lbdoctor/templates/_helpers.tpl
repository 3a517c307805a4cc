{{/* Names, labels and the bits every template shares. */}}

{{- define "lbdoctor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lbdoctor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lbdoctor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lbdoctor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lbdoctor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lbdoctor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lbdoctor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "lbdoctor.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}
{{- end }}

{{- define "lbdoctor.nodeServiceAccount" -}}
{{- default (printf "%s-node" (include "lbdoctor.fullname" .)) .Values.node.serviceAccount.name }}
{{- end }}

{{- define "lbdoctor.clusterServiceAccount" -}}
{{- default (printf "%s-cluster" (include "lbdoctor.fullname" .)) .Values.clusterRole.serviceAccount.name }}
{{- end }}

{{/* Settings as LBDOCTOR_<SETTING> variables: the common ones, then the role's over them.
     Call with (list $common $role). */}}
{{- define "lbdoctor.settingsEnv" -}}
{{- $merged := merge (deepCopy (index . 1)) (deepCopy (index . 0)) }}
{{- range $key := keys $merged | sortAlpha }}
- name: {{ printf "LBDOCTOR_%s" ($key | upper) }}
  value: {{ index $merged $key | toString | quote }}
{{- end }}
{{- end }}

{{/* The Secret holding web-config.yml (exporter-toolkit format), or nothing. */}}
{{- define "lbdoctor.webSecret" -}}
{{- if .Values.web.existingSecret }}{{ .Values.web.existingSecret }}
{{- else if .Values.web.config }}{{ include "lbdoctor.fullname" . }}-web
{{- end }}
{{- end }}

{{/* https when the web config serves TLS (web.tls, or tls_server_config in web.config). */}}
{{- define "lbdoctor.scheme" -}}
{{- if or .Values.web.tls (and .Values.web.config (hasKey .Values.web.config "tls_server_config")) }}https{{ else }}http{{ end }}
{{- end }}

{{/* The web config's environment variable, for both roles. */}}
{{- define "lbdoctor.webEnv" -}}
{{- if include "lbdoctor.webSecret" . }}
- name: LBDOCTOR_WEB_CONFIG_FILE
  value: /etc/lbdoctor/web/web-config.yml
{{- end }}
{{- end }}

{{/* How a role reads the other role's API behind the web config (peer_* settings): the CA, the name to
     verify, a client certificate, basic auth. Both roles get the same: one web config serves both. */}}
{{- define "lbdoctor.peerEnv" -}}
{{- $peer := .Values.web.peer }}
{{- if eq (include "lbdoctor.scheme" .) "https" }}
{{- if and .Values.web.tlsSecret $peer.useTlsSecretCa }}
- name: LBDOCTOR_PEER_TLS_CA_FILE
  value: /etc/lbdoctor/tls/ca.crt
{{- end }}
{{- with $peer.serverName }}
- name: LBDOCTOR_PEER_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $peer.insecureSkipVerify }}
- name: LBDOCTOR_PEER_TLS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- if and .Values.web.clientCertificates .Values.web.tlsSecret $peer.clientCertificate }}
- name: LBDOCTOR_PEER_TLS_CERT_FILE
  value: /etc/lbdoctor/tls/tls.crt
- name: LBDOCTOR_PEER_TLS_KEY_FILE
  value: /etc/lbdoctor/tls/tls.key
{{- end }}
{{- end }}
{{- if $peer.basicAuthUsername }}
- name: LBDOCTOR_PEER_BASIC_AUTH_USERNAME
  value: {{ $peer.basicAuthUsername | quote }}
{{- if $peer.basicAuthSecret }}
- name: LBDOCTOR_PEER_BASIC_AUTH_PASSWORD_FILE
  value: /etc/lbdoctor/peer/password
{{- end }}
{{- end }}
{{- end }}

{{/* The web config's volumes and mounts: web-config.yml at /etc/lbdoctor/web, certificates at /etc/lbdoctor/tls. */}}
{{- define "lbdoctor.webMounts" -}}
{{- if include "lbdoctor.webSecret" . }}
- name: web-config
  mountPath: /etc/lbdoctor/web
  readOnly: true
{{- end }}
{{- if .Values.web.tlsSecret }}
- name: web-tls
  mountPath: /etc/lbdoctor/tls
  readOnly: true
{{- end }}
{{- if .Values.web.peer.basicAuthSecret }}
- name: peer-auth
  mountPath: /etc/lbdoctor/peer
  readOnly: true
{{- end }}
{{- end }}

{{- define "lbdoctor.webVolumes" -}}
{{- with include "lbdoctor.webSecret" . }}
- name: web-config
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .Values.web.tlsSecret }}
- name: web-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .Values.web.peer.basicAuthSecret }}
- name: peer-auth
  secret:
    secretName: {{ . }}
    items:
      - key: password
        path: password
{{- end }}
{{- end }}

{{/* Liveness on /healthz; readiness on /readyz, which fails until every watched resource was listed once.
     Both answer without basic auth; over https when the web config serves TLS; a plain TCP check when it
     requires client certificates, which the kubelet does not have. */}}
{{- define "lbdoctor.probes" -}}
{{- $scheme := include "lbdoctor.scheme" . | upper }}
livenessProbe:
  {{- if .Values.web.clientCertificates }}
  tcpSocket:
    port: http-metrics
  {{- else }}
  httpGet:
    path: /healthz
    port: http-metrics
    scheme: {{ $scheme }}
  {{- end }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  {{- if .Values.web.clientCertificates }}
  tcpSocket:
    port: http-metrics
  {{- else }}
  httpGet:
    path: /readyz
    port: http-metrics
    scheme: {{ $scheme }}
  {{- end }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end }}
