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

{{/* Liveness on /healthz; readiness on /readyz, which fails until every watched resource was listed once. */}}
{{- define "lbdoctor.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http-metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http-metrics
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end }}
