{{/*
Expand the name of the chart.
*/}}
{{- define "opsgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "opsgate.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "opsgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "opsgate.labels" -}}
helm.sh/chart: {{ include "opsgate.chart" . }}
{{ include "opsgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels, shared by web and scheduler pods; app.kubernetes.io/component tells them apart.
*/}}
{{- define "opsgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opsgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "opsgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "opsgate.configMapName" -}}
{{- if .Values.config.files }}
{{- printf "%s-config" (include "opsgate.fullname" .) }}
{{- else }}
{{- .Values.config.existingConfigMap }}
{{- end }}
{{- end }}

{{/*
The Secret the pods read, or "" when there is none.
*/}}
{{- define "opsgate.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.values }}
{{- include "opsgate.fullname" . }}
{{- end }}
{{- end }}

{{/*
"true" when one pod holds everything: SQLite, one web replica that runs the scheduler itself.
*/}}
{{- define "opsgate.singlePod" -}}
{{- if eq .Values.store.kind "sqlite" }}true{{ end }}
{{- end }}

{{/*
Every variable of bots/settings.py RuntimeSettings that holds a secret (SecretStr), plus the
Alertmanager basic_auth username that goes with its password. tests/test_helm_chart.py keeps
this list equal to the settings.
*/}}
{{- define "opsgate.secretVariables" -}}
- OPSGATE_STORE_URL
- OPSGATE_SLACK_BOT_TOKEN
- OPSGATE_SLACK_SIGNING_SECRET
- OPSGATE_SLACK_APP_TOKEN
- OPSGATE_TELEGRAM_BOT_TOKEN
- OPSGATE_TELEGRAM_WEBHOOK_SECRET
- OPSGATE_GITHUB_TOKEN
- OPSGATE_GITHUB_REVIEW_TOKEN
- OPSGATE_GITHUB_WEBHOOK_SECRET
- OPSGATE_ARGOCD_TOKEN
- OPSGATE_PROMETHEUS_TOKEN
- OPSGATE_ALERTMANAGER_TOKEN
- OPSGATE_ALERTMANAGER_USERNAME
- OPSGATE_ALERTMANAGER_PASSWORD
- OPSGATE_ALERTMANAGER_API_TOKEN
- OPSGATE_AWS_ACCESS_KEY_ID
- OPSGATE_AWS_SECRET_ACCESS_KEY
{{- end }}

{{/*
Fails the render on values that cannot work; every template that makes a pod includes it.
*/}}
{{- define "opsgate.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.store.kind (list "postgresql" "sqlite")) }}
{{- fail (printf "store.kind: %q is neither postgresql nor sqlite" $v.store.kind) }}
{{- end }}
{{- if eq $v.store.kind "sqlite" }}
{{- if gt (int $v.web.replicaCount) 1 }}
{{- fail (printf "store.kind sqlite with web.replicaCount %d: each pod would keep its own database in its emptyDir, and replicas would disagree about every proposal. Use store.kind postgresql (OPSGATE_STORE_URL in the Secret), or for a trial in one pod web.replicaCount 1 and scheduler.enabled false" (int $v.web.replicaCount)) }}
{{- end }}
{{- if $v.scheduler.enabled }}
{{- fail "store.kind sqlite with scheduler.enabled: the scheduler pod would keep its own database, apart from the web pod's. Use store.kind postgresql, or for a trial in one pod scheduler.enabled false and web.replicaCount 1 (that pod then runs the scheduler)" }}
{{- end }}
{{- else if not (include "opsgate.secretName" .) }}
{{- fail "store.kind postgresql reads OPSGATE_STORE_URL from a Secret: set secrets.existingSecret (or secrets.values for a trial)" }}
{{- else if and (not $v.secrets.existingSecret) (not (hasPrefix "postgresql" (get $v.secrets.values "OPSGATE_STORE_URL" | default "" | toString))) }}
{{- fail "secrets.values.OPSGATE_STORE_URL: store.kind postgresql needs a PostgreSQL SQLAlchemy URL (postgresql+psycopg://user:password@host:5432/opsgate)" }}
{{- end }}
{{- if lt (int $v.web.replicaCount) 1 }}
{{- fail "web.replicaCount: at least 1" }}
{{- end }}
{{- if and (not $v.config.files) (not $v.config.existingConfigMap) }}
{{- fail "config: set config.existingConfigMap (kubectl create configmap opsgate-config --from-file=config/) or config.files" }}
{{- end }}
{{- if $v.config.files }}
{{- range $name := list "users.yaml" "policy.yaml" "targets.yaml" }}
{{- if not (hasKey $v.config.files $name) }}
{{- fail (printf "config.files: %s is required (settings.yaml, agents.yaml and routes.yaml have defaults)" $name) }}
{{- end }}
{{- end }}
{{- if not (include "opsgate.singlePod" .) }}
{{- $settings := fromYaml (get $v.config.files "settings.yaml" | default "") }}
{{- if hasKey $settings "Error" }}
{{- fail (printf "config.files settings.yaml does not parse: %s" $settings.Error) }}
{{- end }}
{{- $gitops := $settings.gitops | default dict }}
{{- if ne ($gitops.backend | default "local") "github" }}
{{- fail "config.files settings.yaml: gitops.backend must be github in a cluster; local keeps a sandbox repository in each pod's emptyDir" }}
{{- end }}
{{- $telegram := (($settings.chat | default dict).telegram) | default dict }}
{{- if and $telegram.enabled (ne ($telegram.mode | default "polling") "webhook") }}
{{- fail "config.files settings.yaml: chat.telegram.mode must be webhook in a cluster; Telegram lets only one client poll a bot, and every pod would" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template of both Deployments. Called with (dict "root" $ "component" "web"|"scheduler").
*/}}
{{- define "opsgate.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $part := get $v .component }}
{{- $secret := include "opsgate.secretName" $root }}
{{- $runsScheduler := or (eq .component "scheduler") (include "opsgate.singlePod" $root) }}
{{- /* Files the chart renders itself restart the pods when they change. */}}
{{- $annotations := deepCopy ($part.podAnnotations | default dict) }}
{{- if $v.config.files }}
{{- $_ := set $annotations "checksum/config" (include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum) }}
{{- end }}
{{- if and (not $v.secrets.existingSecret) $v.secrets.values }}
{{- $_ := set $annotations "checksum/secret" (include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum) }}
{{- end -}}
metadata:
  labels:
    {{- include "opsgate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $part.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "opsgate.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  containers:
    - name: opsgate
      image: "{{ $v.image.repository }}:{{ $v.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["opsgate", "serve", "--host", "0.0.0.0", "--port", "{{ $v.containerPort }}"]
      ports:
        - name: http
          containerPort: {{ $v.containerPort }}
          protocol: TCP
      env:
        - name: OPSGATE_SCHEDULER
          value: {{ ternary "true" "false" (not (not $runsScheduler)) | quote }}
        - name: OPSGATE_CONFIG_DIR
          value: /etc/opsgate
        - name: OPSGATE_DATA_DIR
          value: {{ $v.dataDir.mountPath | quote }}
        - name: MPLCONFIGDIR  # matplotlib's cache; the root filesystem is read-only
          value: /tmp/matplotlib
        {{- if $secret }}
        {{- range $name := include "opsgate.secretVariables" $root | fromYamlArray }}
        {{- if not (and (eq $name "OPSGATE_STORE_URL") (include "opsgate.singlePod" $root)) }}
        - name: {{ $name }}
          valueFrom:
            secretKeyRef:
              name: {{ $secret }}
              key: {{ $name }}
              optional: {{ ne $name "OPSGATE_STORE_URL" }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if gt (int $v.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $v.preStopSleepSeconds }}"]
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $v.probes.startup.periodSeconds }}
        failureThreshold: {{ $v.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $v.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: {{ $v.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.readiness.failureThreshold }}
      resources:
        {{- toYaml $part.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/opsgate
          readOnly: true
        - name: data
          mountPath: {{ $v.dataDir.mountPath }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "opsgate.configMapName" $root }}
    - name: data
      emptyDir:
        sizeLimit: {{ $v.dataDir.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
