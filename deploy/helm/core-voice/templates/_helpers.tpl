{{/* Chart name, truncated to a DNS label. */}}
{{- define "core-voice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-core-voice, or the release name if it already holds the chart name. */}}
{{- define "core-voice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "core-voice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "core-voice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: core-voice
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "dispatcher"). */}}
{{- define "core-voice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "core-voice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component. */}}
{{- define "core-voice.componentLabels" -}}
{{ include "core-voice.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
What the chart knows about each service: its values key, component name, NATS user,
HTTP port and the env vars naming it, and its probe paths (from the services' code).
*/}}
{{- define "core-voice.services" -}}
configSync:
  component: config-sync
  role: config_sync
  port: 8081
  hostEnv: CONFIG_SYNC_HTTP_HOST
  portEnv: CONFIG_SYNC_HTTP_PORT
  liveness: /healthz
  readiness: /healthz
dispatcher:
  component: dispatcher
  role: dispatcher
  port: 8082
  hostEnv: DISPATCHER_HTTP_HOST
  portEnv: DISPATCHER_HTTP_PORT
  liveness: /healthz
  readiness: /healthz
worker:
  component: worker
  role: worker
  port: 8083
  hostEnv: WORKER_HEALTH_HOST
  portEnv: WORKER_HEALTH_PORT
  liveness: /healthz
  readiness: /readyz
telemetry:
  component: telemetry
  role: telemetry
  port: 9464
  hostEnv: TELEMETRY_HTTP_HOST
  portEnv: TELEMETRY_HTTP_PORT
  liveness: /healthz
  readiness: /healthz
{{- end -}}

{{/* The image of one service: (dict "root" $ "image" .Values.dispatcher.image). */}}
{{- define "core-voice.image" -}}
{{- $registry := default .root.Values.global.imageRegistry .image.registry -}}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL the services use. */}}
{{- define "core-voice.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" .Release.Name -}}
{{- else -}}
{{- .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* The hardened container securityContext every container gets. */}}
{{- define "core-voice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The NATS login of one role: (dict "root" $ "role" "dispatcher"). */}}
{{- define "core-voice.natsEnv" -}}
- name: NATS_URL
  value: {{ include "core-voice.natsUrl" .root | quote }}
- name: NATS_USER
  value: {{ .role | quote }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.nats.existingSecret }}
      key: {{ .role }}
- name: NATS_STREAM_REPLICAS
  value: {{ include "core-voice.streamReplicas" .root | quote }}
{{- with .root.Values.externalNats.tls.caSecret }}
- name: NATS_CA
  value: /etc/core-voice/nats-ca/{{ $.root.Values.externalNats.tls.caKey }}
{{- end }}
{{- end -}}

{{/* JetStream stream replicas: R3 on the subchart's cluster (fewer only if it has fewer
nodes), else externalNats.streamReplicas. */}}
{{- define "core-voice.streamReplicas" -}}
{{- if .Values.nats.enabled -}}
{{- if .Values.nats.config.cluster.enabled -}}
{{- min 3 (int .Values.nats.config.cluster.replicas) -}}
{{- else -}}
1
{{- end -}}
{{- else -}}
{{- .Values.externalNats.streamReplicas -}}
{{- end -}}
{{- end -}}

{{/* The NATS CA Secret's volume and mount (nothing without externalNats.tls.caSecret). */}}
{{- define "core-voice.natsCaVolume" -}}
{{- with .Values.externalNats.tls.caSecret }}
- name: nats-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
{{- end }}
{{- end -}}
{{- define "core-voice.natsCaVolumeMount" -}}
{{- with .Values.externalNats.tls.caSecret }}
- name: nats-ca
  mountPath: /etc/core-voice/nats-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* LiveKit URL and credentials (dispatcher, worker). */}}
{{- define "core-voice.livekitEnv" -}}
- name: LIVEKIT_URL
  value: {{ .Values.livekit.url | quote }}
- name: LIVEKIT_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.livekit.existingSecret }}
      key: {{ .Values.secrets.livekit.apiKeyKey }}
- name: LIVEKIT_API_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.livekit.existingSecret }}
      key: {{ .Values.secrets.livekit.apiSecretKey }}
{{- end -}}

{{/* config_sync's database URL. */}}
{{- define "core-voice.databaseEnv" -}}
- name: CONFIG_SYNC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.postgres.existingSecret }}
      key: {{ .Values.secrets.postgres.databaseUrlKey }}
{{- end -}}
