{{/* Chart name, truncated to 63 characters (DNS-1123 label). */}}
{{- define "agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "agent.fullname" -}}
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

{{- define "agent.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a DaemonSet selector is immutable). */}}
{{- define "agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agent.labels" -}}
helm.sh/chart: {{ include "agent.chart" . }}
{{ include "agent.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: log-agent
{{- end }}

{{- define "agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag or @digest; global.image.registry wins over image.registry. */}}
{{- define "agent.image" -}}
{{- $registry := .Values.global.image.registry | default .Values.image.registry -}}
{{- $repo := .Values.image.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end }}

{{/* True (non-empty) when the agent runs from an Alloy config file instead of CLI flags. */}}
{{- define "agent.alloyMode" -}}
{{- if or .Values.agent.configMap.content (and (not .Values.agent.configMap.create) .Values.agent.configMap.name) }}true{{ end -}}
{{- end }}

{{- define "agent.configMapName" -}}
{{- if .Values.agent.configMap.create }}
{{- include "agent.fullname" . }}
{{- else }}
{{- required "agent.configMap.name is required when agent.configMap.create is false" .Values.agent.configMap.name }}
{{- end }}
{{- end }}

{{- define "agent.configKey" -}}
{{- .Values.agent.configMap.key | default "config.alloy" }}
{{- end }}

{{/* Host directory for positions: unique per release so two releases never share a file. */}}
{{- define "agent.stateHostPath" -}}
{{- printf "%s/%s-%s" (trimSuffix "/" .Values.agent.storage.hostPathBase) (include "agent.namespace" .) (include "agent.fullname" .) }}
{{- end }}
