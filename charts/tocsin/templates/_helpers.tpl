{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "tocsin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "tocsin.fullname" -}}
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

{{/* Labels every object carries. */}}
{{- define "tocsin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tocsin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tocsin
{{- end -}}

{{- define "tocsin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tocsin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Context for one service: dict "root" $ "name" <key> "svc" <merged values>. */}}
{{- define "tocsin.service.fullname" -}}
{{- printf "%s-%s" (include "tocsin.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.service.labels" -}}
{{ include "tocsin.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "tocsin.service.selectorLabels" -}}
{{ include "tocsin.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
The enabled services, each merged over serviceDefaults, as a YAML map name -> values.
Callers: {{- range $name, $svc := include "tocsin.services" . | fromYaml }}
*/}}
{{- define "tocsin.services" -}}
{{- $out := dict -}}
{{- range $name, $svc := .Values.services -}}
{{- $merged := mergeOverwrite (deepCopy $.Values.serviceDefaults) (deepCopy $svc) -}}
{{- if $merged.enabled -}}
{{- $_ := required (printf "services.%s.grpcPort (or httpPort) is required" $name) (or $merged.grpcPort $merged.httpPort) -}}
{{- $_ := required (printf "services.%s.metricsPort is required" $name) $merged.metricsPort -}}
{{- $_ := set $out $name $merged -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "tocsin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tocsin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tocsin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.datastoresSecretName" -}}
{{- default (printf "%s-datastores" (include "tocsin.fullname" .)) .Values.datastores.existingSecret -}}
{{- end -}}

{{- define "tocsin.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "tocsin.fullname" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{- define "tocsin.configName" -}}
{{- printf "%s-config" (include "tocsin.fullname" .) -}}
{{- end -}}

{{/* Environment-variable form of an operator name: proximus-be -> PROXIMUS_BE. */}}
{{- define "tocsin.envName" -}}
{{- regexReplaceAll "[^A-Z0-9]" (upper .) "_" -}}
{{- end -}}

{{/* Environment of every tocsin container: the datastores, from their Secret. */}}
{{- define "tocsin.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tocsin.datastoresSecretName" . }}
      key: DATABASE_URL
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tocsin.datastoresSecretName" . }}
      key: REDIS_URL
{{- end -}}

{{/*
Credentials one service reads, each from the credentials Secret under its own name: the keys
in its `secretEnv`, and with `smpp: true` the SMPP accounts (optional: a bind without its own
account uses the shared TOCSIN_SMPP_SYSTEM_ID / TOCSIN_SMPP_PASSWORD).
Context: dict "root" $ "svc" <merged service values>.
*/}}
{{- define "tocsin.credentialEnv" -}}
{{- $secret := include "tocsin.credentialsSecretName" .root -}}
{{- range $key := .svc.secretEnv | default list }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- if .svc.smpp }}
{{- $keys := list "TOCSIN_SMPP_SYSTEM_ID" "TOCSIN_SMPP_PASSWORD" }}
{{- range $op, $_ := .root.Values.smpp.operators }}
{{- $env := include "tocsin.envName" $op }}
{{- $keys = concat $keys (list (printf "TOCSIN_SMPP_%s_SYSTEM_ID" $env) (printf "TOCSIN_SMPP_%s_PASSWORD" $env)) }}
{{- end }}
{{- range $key := $keys }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes for the config files and a writable /tmp under a read-only root. */}}
{{- define "tocsin.volumes" -}}
- name: config
  configMap:
    name: {{ include "tocsin.configName" . }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "tocsin.volumeMounts" -}}
- name: config
  mountPath: /etc/tocsin
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}


{{/*
SMPP sessions: every pod of a service with `smpp: true` opens every bind of every operator. With
maxSurge 0 a rollout or a drain replaces one pod at a time, and the pod going away keeps its
binds while it drains, so an operator sees up to (replicas + 1) x binds sessions. Refuse values
that could exceed an operator's maxSessions, and an autoscaler that would change replicas.
(Node drains can pass this count; the sms pods themselves hold maxSessions in Redis, a lease per
session: docs/sms.md "Session limit".)
Context: dict "root" $ "name" <key> "svc" <merged service values>.
*/}}
{{- define "tocsin.smppSessions" -}}
{{- if .svc.smpp -}}
{{- if or .svc.autoscaling.enabled .svc.keda.enabled -}}
{{- fail (printf "services.%s: SMPP binds are sized by the operators' session limits, not by an autoscaler: set services.%s.autoscaling.enabled=false (and keda.enabled=false) and size replicas" .name .name) -}}
{{- end -}}
{{- $pods := add (int .svc.replicas) 1 -}}
{{- range $op, $cfg := .root.Values.smpp.operators -}}
{{- $binds := int ($cfg.binds | default 1) -}}
{{- if and $cfg.maxSessions (gt (mul $pods $binds) (int $cfg.maxSessions)) -}}
{{- fail (printf "smpp.operators.%s: (replicas %d + 1 draining) x %d binds = %d sessions, above its maxSessions %d" $op (int $.svc.replicas) $binds (mul $pods $binds) (int $cfg.maxSessions)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
