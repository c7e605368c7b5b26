{{- define "fake-loki.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fake-loki.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fake-loki.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "fake-loki.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fake-loki.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fake-loki.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fake-loki.labels" -}}
helm.sh/chart: {{ include "fake-loki.chart" . }}
{{ include "fake-loki.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: loki
{{- end }}

{{- define "fake-loki.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry }}{{ $repo = printf "%s/%s" .Values.image.registry $repo }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end }}

{{- define "fake-loki.claimName" -}}
{{- .Values.persistence.existingClaim | default (include "fake-loki.fullname" .) }}
{{- end }}

{{/* Whether a limits file is mounted: explicit limits, or retention overrides. */}}
{{- define "fake-loki.limitsFile" -}}
{{- if or .Values.limits.enabled .Values.retention.enabled }}true{{ end }}
{{- end }}

{{/* The limits file: limits.config, plus each retention tenant's retention_period in
     its overrides unless limits.config already sets one. */}}
{{- define "fake-loki.limitsConfig" -}}
{{- $cfg := dict }}
{{- if .Values.limits.enabled }}
{{- $cfg = deepCopy .Values.limits.config }}
{{- end }}
{{- if .Values.retention.enabled }}
{{- $over := get $cfg "overrides" | default dict }}
{{- range $tenant, $period := .Values.retention.tenants }}
{{- $t := get $over $tenant | default dict }}
{{- if not (hasKey $t "retention_period") }}
{{- $_ := set $t "retention_period" $period }}
{{- end }}
{{- $_ := set $over $tenant $t }}
{{- end }}
{{- $_ := set $cfg "overrides" $over }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
