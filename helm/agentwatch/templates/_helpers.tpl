{{- define "agentwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentwatch.fullname" -}}
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

{{/* The headless Service; also the StatefulSet's serviceName, which gives pods their DNS names. */}}
{{- define "agentwatch.headlessName" -}}
{{- printf "%s-headless" (include "agentwatch.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "agentwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agentwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The chart's own Secret: the ClickHouse password (if given) and the generated user hash key. */}}
{{- define "agentwatch.secretName" -}}
{{- include "agentwatch.fullname" . }}
{{- end }}

{{- define "agentwatch.clickhousePasswordSecret" -}}
{{- if .Values.clickhouse.existingSecret }}
{{- .Values.clickhouse.existingSecret }}
{{- else if .Values.clickhouse.password }}
{{- include "agentwatch.secretName" . }}
{{- end }}
{{- end }}

{{- define "agentwatch.userHashKeySecret" -}}
{{- default (include "agentwatch.secretName" .) .Values.userHashKey.existingSecret }}
{{- end }}

{{/*
config.service.shutdown_timeout in whole seconds (rounded up), written as agentwatch accepts it:
a number of seconds or a number with ms, s, m, h or d. Default 15 as in agentwatch.
*/}}
{{- define "agentwatch.shutdownSeconds" -}}
{{- $raw := toString (dig "service" "shutdown_timeout" "15" .Values.config) | trim }}
{{- $match := regexFind "^[0-9]+(\\.[0-9]+)?" $raw }}
{{- if not $match }}
{{- fail (printf "config.service.shutdown_timeout: %q is not a duration such as 20s" $raw) }}
{{- end }}
{{- $unit := trimPrefix $match $raw | trim }}
{{- $factors := dict "" 1.0 "s" 1.0 "ms" 0.001 "m" 60.0 "h" 3600.0 "d" 86400.0 }}
{{- if not (hasKey $factors $unit) }}
{{- fail (printf "config.service.shutdown_timeout: unknown unit %q in %q" $unit $raw) }}
{{- end }}
{{- mulf (float64 $match) (get $factors $unit) | ceil | int }}
{{- end }}

{{/* SIGTERM drains queues for up to shutdown_timeout; the kubelet must wait longer than that. */}}
{{- define "agentwatch.terminationGracePeriod" -}}
{{- $shutdown := include "agentwatch.shutdownSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown 10 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than config.service.shutdown_timeout (%ds), or the pod is killed before its queues drain" $grace $shutdown) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{- define "agentwatch.validate" -}}
{{- if and .Values.clickhouse.embedded .Values.clickhouse.endpoint }}
{{- fail "clickhouse: set either endpoint (an external ClickHouse) or embedded=true, not both" }}
{{- end }}
{{- if and (not .Values.clickhouse.embedded) (not .Values.clickhouse.endpoint) }}
{{- fail "clickhouse.endpoint is required: your ClickHouse's HTTP URL, e.g. http://clickhouse:8123 (or clickhouse.embedded=true for a single-replica trial)" }}
{{- end }}
{{- if and .Values.clickhouse.embedded (gt (int .Values.replicaCount) 1) }}
{{- fail "clickhouse.embedded runs one database per pod: use replicaCount=1, or an external ClickHouse" }}
{{- end }}
{{- if and .Values.budgets.webhook.existingSecret .Values.budgets.webhook.url }}
{{- fail "budgets.webhook: set either existingSecret or url, not both" }}
{{- end }}
{{- if and .Values.clickhouse.existingSecret .Values.clickhouse.password }}
{{- fail "clickhouse: set either existingSecret or password, not both" }}
{{- end }}
{{- end }}

{{/*
The agentwatch config: .Values.config, plus the budgets extension when budgets.enabled. With
more than one replica the extension runs on the first pod only, so each notification is sent once.
*/}}
{{- define "agentwatch.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.budgets.enabled }}
{{- $ext := dict "evaluation_interval" .Values.budgets.evaluationInterval "timezone" .Values.budgets.timezone "budgets" .Values.budgets.items }}
{{- with .Values.budgets.silence }}
{{- $_ := set $ext "silence" . }}
{{- end }}
{{- if include "agentwatch.budgetWebhookSecret" . }}
{{- $_ := set $ext "notify" (dict "webhook" (dict "url" "${env:AGENTWATCH_BUDGET_WEBHOOK}")) }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- $_ := set $ext "only_on_host" (printf "%s-0" (include "agentwatch.fullname" .)) }}
{{- end }}
{{- $extensions := get $config "extensions" | default dict }}
{{- $_ := set $extensions "budgets" $ext }}
{{- $_ := set $config "extensions" $extensions }}
{{- $service := get $config "service" }}
{{- $_ := set $service "extensions" (append (without (get $service "extensions" | default list) "budgets") "budgets") }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "agentwatch.budgetWebhookSecret" -}}
{{- if .Values.budgets.webhook.existingSecret }}
{{- .Values.budgets.webhook.existingSecret }}
{{- else if .Values.budgets.webhook.url }}
{{- include "agentwatch.secretName" . }}
{{- end }}
{{- end }}

{{/* "true" when the config runs the console with auth, so it may listen beyond loopback. */}}
{{- define "agentwatch.consoleExposed" -}}
{{- $console := dig "extensions" "console" dict .Values.config }}
{{- if and (has "console" (dig "service" "extensions" list .Values.config)) (not (empty (get (default dict $console) "auth"))) }}true{{ end }}
{{- end }}
