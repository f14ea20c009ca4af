{{/* The worker pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "sluice.podTemplate" -}}
metadata:
  labels:
    {{- include "sluice.workerSelectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A changed worker file or Secret rolls the workers.
    checksum/config: {{ include "sluice.workerFile" . | sha256sum }}
    {{- if include "sluice.chartSecretNeeded" . }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sluice.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: worker
      image: {{ include "sluice.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["--log-format", {{ .Values.log.format | quote }}, "worker", "/etc/sluice/worker/worker.yaml"]
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      env:
        - name: SLUICE_LOG
          value: {{ .Values.log.level | quote }}
        - name: SLUICE_POD_NAME
          valueFrom:
            fieldRef: { fieldPath: metadata.name }
        - name: SLUICE_POD_IP
          valueFrom:
            fieldRef: { fieldPath: status.podIP }
        # The worker's id and the URL the other workers forward REST writes to.
        - name: SLUICE_ADVERTISED_URL
          {{- if eq .Values.kind "StatefulSet" }}
          value: {{ printf "%s://$(SLUICE_POD_NAME).%s.%s.svc.%s:%d" (include "sluice.scheme" .) (include "sluice.peersName" .) .Release.Namespace .Values.clusterDomain (int .Values.containerPort) | quote }}
          {{- else }}
          value: {{ printf "%s://$(SLUICE_POD_IP):%d" (include "sluice.scheme" .) (int .Values.containerPort) | quote }}
          {{- end }}
        {{- if .Values.restTls.enabled }}
        # The probes' `sluice connectors health` calls this worker by the name its certificate holds.
        - name: SLUICE_URL
          value: "$(SLUICE_ADVERTISED_URL)"
        {{- include "sluice.tlsClientEnv" . | nindent 8 }}
        {{- end }}
        {{- with include "sluice.tokenEnv" . | trim }}{{ . | nindent 8 }}{{ end }}
        {{- with include "sluice.authEnv" . | trim }}{{ . | nindent 8 }}{{ end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "sluice.envFrom" . | trim }}
      envFrom:
        {{- . | nindent 8 }}
      {{- end }}
      readinessProbe:
        {{- include "sluice.probe" (list .Values.readinessProbe false .) | nindent 8 }}
      livenessProbe:
        {{- include "sluice.probe" (list .Values.livenessProbe true .) | nindent 8 }}
      startupProbe:
        {{- include "sluice.probe" (list .Values.startupProbe true .) | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/sluice/worker
          readOnly: true
        # The only writable paths: the data dir (also the WebAssembly compile cache) and /tmp.
        - name: data
          mountPath: /var/lib/sluice
        - name: tmp
          mountPath: /tmp
        {{- if .Values.plugins.configMap }}
        - name: plugins
          mountPath: /usr/local/lib/sluice/plugins
          readOnly: true
        {{- end }}
        {{- if .Values.restTls.enabled }}
        - name: tls
          mountPath: /etc/sluice/tls
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "sluice.fullname" . }}
    - name: data
      emptyDir: {}
    - name: tmp
      emptyDir: {}
    {{- with .Values.plugins.configMap }}
    - name: plugins
      configMap:
        name: {{ . }}
    {{- end }}
    {{- if .Values.restTls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.restTls.secretName }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
