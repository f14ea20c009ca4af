{{/* Names and labels. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
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

{{/* The headless Service that gives StatefulSet workers their DNS names. */}}
{{- define "sluice.peersName" -}}
{{- printf "%s-peers" (include "sluice.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Worker pods only (not the pipelines Job's pod). */}}
{{- define "sluice.workerSelectorLabels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The chart creates a Secret for secret.env (without secret.existingSecret) and for
restAuth.token (without restAuth.existingSecret). */}}
{{- define "sluice.chartSecretNeeded" -}}
{{- if or (and .Values.secret.env (not .Values.secret.existingSecret)) (and .Values.restAuth.token (not .Values.restAuth.existingSecret)) }}true{{ end }}
{{- end }}

{{/* Secrets whose keys become worker environment variables. */}}
{{- define "sluice.envFrom" -}}
{{- with .Values.secret.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- if include "sluice.chartSecretNeeded" . }}
- secretRef:
    name: {{ include "sluice.fullname" . }}
{{- end }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Where SLUICE_TOKEN comes from: "name/key", or empty without a token. */}}
{{- define "sluice.tokenRef" -}}
{{- if .Values.restAuth.existingSecret }}
{{- printf "%s/%s" .Values.restAuth.existingSecret .Values.restAuth.existingSecretKey }}
{{- else if .Values.restAuth.token }}
{{- printf "%s/SLUICE_TOKEN" (include "sluice.fullname" .) }}
{{- end }}
{{- end }}

{{- define "sluice.tokenEnv" -}}
{{- with include "sluice.tokenRef" . }}
- name: SLUICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ (split "/" .)._0 }}
      key: {{ (split "/" .)._1 }}
{{- end }}
{{- end }}

{{/* Workers with a token: it is the admin credential of the REST API, and workers sign the writes
they forward with SLUICE_WORKER_SECRET (from the chart's Secret, derived from the token and the
release; or restAuth.existingSecretWorkerKey of the existing Secret). */}}
{{- define "sluice.authEnv" -}}
{{- if include "sluice.tokenRef" . }}
- name: SLUICE_REST_TOKENS
  value: "admin:$(SLUICE_TOKEN)"
- name: SLUICE_WORKER_SECRET
  valueFrom:
    secretKeyRef:
      {{- if .Values.restAuth.existingSecret }}
      name: {{ .Values.restAuth.existingSecret }}
      key: {{ .Values.restAuth.existingSecretWorkerKey }}
      {{- else }}
      name: {{ include "sluice.fullname" . }}
      key: SLUICE_WORKER_SECRET
      {{- end }}
{{- end }}
{{- end }}

{{/* The worker file: values.worker with the cluster defaults and the chart-owned fields. */}}
{{- define "sluice.workerFile" -}}
{{- $name := include "sluice.fullname" . }}
{{- $worker := deepCopy .Values.worker }}
{{- $cluster := merge (deepCopy (default dict .Values.worker.cluster)) (dict
      "group_id" $name
      "config_topic" (printf "%s-configs" $name)
      "offsets_topic" (printf "%s-offsets" $name)
      "status_topic" (printf "%s-status" $name)) }}
{{- $rest := merge (dict
      "listen" (printf "0.0.0.0:%d" (int .Values.containerPort))
      "advertised_url" "${env:SLUICE_ADVERTISED_URL}") (deepCopy (default dict .Values.worker.rest)) }}
{{- if include "sluice.tokenRef" . }}
{{- $_ := set $rest "auth" (merge (deepCopy (default dict (get $rest "auth"))) (dict
      "tokens_env" "SLUICE_REST_TOKENS"
      "worker_secret" "${env:SLUICE_WORKER_SECRET}")) }}
{{- else if not (hasKey $rest "auth") }}
{{- /* No token: open to whatever reaches the pods, as Kafka Connect is; the worker logs a warning. */}}
{{- $_ := set $rest "allow_unauthenticated" true }}
{{- end }}
{{- with .Values.restTls }}{{ if .enabled }}
{{- $tls := dict
      "cert_file" (printf "/etc/sluice/tls/%s" .certKey)
      "key_file" (printf "/etc/sluice/tls/%s" .keyKey)
      "ca_file" (printf "/etc/sluice/tls/%s" .caKey) }}
{{- if .clientAuth }}
{{- $_ := set $tls "client_ca_file" (printf "/etc/sluice/tls/%s" .caKey) }}
{{- end }}
{{- $_ := set $rest "tls" $tls }}
{{- end }}{{ end }}
{{- $_ := set $worker "cluster" $cluster }}
{{- $_ := set $worker "rest" $rest }}
{{- $_ := set $worker "plugins_dir" "/usr/local/lib/sluice/plugins" }}
{{- $_ := set $worker "offsets_file" "/var/lib/sluice/offsets.json" }}
{{- $_ := set $worker "data_dir" "/var/lib/sluice" }}
{{- toYaml $worker }}
{{- end }}

{{/* The REST API's scheme: https with restTls.enabled. */}}
{{- define "sluice.scheme" -}}
{{- if .Values.restTls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* With restTls.enabled: how a `sluice connectors` client in a pod trusts the workers (and, with
clientAuth, presents their certificate), from the TLS Secret mounted at /etc/sluice/tls. */}}
{{- define "sluice.tlsClientEnv" -}}
{{- with .Values.restTls }}{{ if .enabled }}
- name: SLUICE_CA_FILE
  value: {{ printf "/etc/sluice/tls/%s" .caKey | quote }}
{{- if .clientAuth }}
- name: SLUICE_CLIENT_CERT
  value: {{ printf "/etc/sluice/tls/%s" .certKey | quote }}
- name: SLUICE_CLIENT_KEY
  value: {{ printf "/etc/sluice/tls/%s" .keyKey | quote }}
{{- end }}
{{- end }}{{ end }}
{{- end }}

{{/* One probe: as given in values, or with restTls.enabled an exec of `sluice connectors health`
over HTTPS (args: the probe's values, whether it checks liveness). */}}
{{- define "sluice.probe" -}}
{{- $probe := index . 0 }}{{ $live := index . 1 }}{{ $root := index . 2 }}
{{- if $root.Values.restTls.enabled }}
{{- $command := list "sluice" "connectors" "health" }}
{{- if $live }}{{ $command = append $command "--live" }}{{ end }}
{{- toYaml (merge (dict "exec" (dict "command" $command)) (omit $probe "httpGet" "tcpSocket" "grpc")) }}
{{- else }}
{{- toYaml $probe }}
{{- end }}
{{- end }}
