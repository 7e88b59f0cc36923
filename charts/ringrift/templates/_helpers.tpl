{{/* Names and labels shared by every template. */}}

{{- define "ringrift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringrift.fullname" -}}
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

{{- define "ringrift.controller.fullname" -}}
{{- printf "%s-controller" (include "ringrift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringrift.agent.fullname" -}}
{{- printf "%s-agent" (include "ringrift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringrift.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ringrift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringrift
{{- end }}

{{- define "ringrift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringrift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ringrift.controller.selectorLabels" -}}
{{ include "ringrift.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "ringrift.agent.selectorLabels" -}}
{{ include "ringrift.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "ringrift.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "ringrift.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ringrift.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "ringrift.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with the agents' REST token and the cluster (gossip) key. */}}
{{- define "ringrift.secretName" -}}
{{- default (printf "%s-agent" (include "ringrift.fullname" .)) .Values.secret.existingSecret | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringrift.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The log settings every ringrift container takes. */}}
{{- define "ringrift.logArgs" -}}
- --log-format={{ .Values.logging.format }}
- --log-level={{ .Values.logging.level }}
{{- end }}

{{/* The restricted container security context (Pod Security Standards "restricted"). */}}
{{- define "ringrift.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
