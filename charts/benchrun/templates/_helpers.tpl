{{- define "benchrun.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "benchrun.labels" -}}
app.kubernetes.io/name: benchrun
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "benchrun.selectorLabels" -}}
app.kubernetes.io/name: benchrun
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "benchrun.serviceAccountName" -}}
{{- default (include "benchrun.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "benchrun.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The NVML exporter's image (glibc, so it can load libnvidia-ml.so.1). */}}
{{- define "benchrun.gpuExporterImage" -}}
{{- printf "%s:%s" .Values.gpuExporter.image.repository (default .Chart.AppVersion .Values.gpuExporter.image.tag) -}}
{{- end -}}
