{{/*
The chart's name, which is also the app.kubernetes.io/name label: deploy/kubernetes
selects on that label, and so does the real-node test's wait for the pod.
*/}}
{{- define "otelcol-kubevirt.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: the release's name when it already says what it is (the usual
`helm install otelcol-kubevirt ...` then names everything as deploy/kubernetes does),
else release-name. 63 characters at most, as a label value must be.
*/}}
{{- define "otelcol-kubevirt.fullname" -}}
{{- $name := include "otelcol-kubevirt.name" . }}
{{- $full := printf "%s-%s" .Release.Name $name }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride }}
{{- else if contains $name .Release.Name }}
{{- $full = .Release.Name }}
{{- end }}
{{- $full | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects the release's pods: two releases never select each other's. */}}
{{- define "otelcol-kubevirt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otelcol-kubevirt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "otelcol-kubevirt.labels" -}}
{{ include "otelcol-kubevirt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "otelcol-kubevirt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "otelcol-kubevirt.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/*
The collector's configuration file. Without `config` values it is the shipped file
verbatim, comments included; with them, the shipped file parsed and `config`
deep-merged over it (maps key by key, anything else replaced), comments lost.
files/config.yaml is a copy of cmd/otelcol-kubevirt/config.yaml that deploy/helm's
tests keep equal to it.
*/}}
{{- define "otelcol-kubevirt.configFile" -}}
{{- $shipped := .Files.Get "files/config.yaml" }}
{{- if not $shipped }}
{{- fail "files/config.yaml is missing from the chart" }}
{{- end }}
{{- if .Values.config }}
{{- include "otelcol-kubevirt.configMap" . }}
{{- else }}
{{- $shipped }}
{{- end }}
{{- end }}

{{/* The merged configuration as YAML, for templates that look into it. */}}
{{- define "otelcol-kubevirt.configMap" -}}
{{- $cfg := .Files.Get "files/config.yaml" | fromYaml }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "files/config.yaml: %s" $cfg.Error) }}
{{- end }}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) }}
{{- end }}

{{/*
Whether the configuration runs the health_check extension: declared under extensions
and started by service.extensions. The probes use it then.
*/}}
{{- define "otelcol-kubevirt.healthCheck" -}}
{{- $cfg := include "otelcol-kubevirt.configMap" . | fromYaml }}
{{- $service := $cfg.service | default dict }}
{{- if and (hasKey ($cfg.extensions | default dict) "health_check") (has "health_check" ($service.extensions | default list)) }}true{{ end }}
{{- end }}

{{/* The scrape settings a ServiceMonitor's or PodMonitor's endpoint takes from values. */}}
{{- define "otelcol-kubevirt.scrapeSettings" -}}
{{- with .interval }}
interval: {{ . }}
{{- end }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with .relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
