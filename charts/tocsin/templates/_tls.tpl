{{/*
Transport security of one service (docs/security.md). Context: dict "root" $ "name" <service>.
The Deployment mounts the service's certificate Secret as a folder and points TOCSIN_TLS_DIR at
it (cert-manager's Secret keys tls.crt, tls.key, ca.crt are the kernel's file names). Not under
/etc/tocsin: a mount point inside the read-only ConfigMap volume cannot be made.

  volumes:      {{ include "tocsin.tls.volume" (dict "root" $ "name" $name) | nindent 8 }}
  volumeMounts: {{ include "tocsin.tls.volumeMount" (dict "root" $ "name" $name) | nindent 12 }}
  env:          {{ include "tocsin.tls.env" (dict "root" $ "name" $name) | nindent 12 }}

Probes use tocsin.tls.probePort: the kubelet's gRPC probes cannot speak TLS, so with TLS on they
ask the plaintext port that serves the health service alone (TOCSIN_HEALTH_PORT).
*/}}
{{- define "tocsin.tls.secretName" -}}
{{- printf "%s-tls" (include "tocsin.service.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.tls.volume" -}}
{{- if .root.Values.tls.enabled -}}
- name: tls
  secret:
    secretName: {{ include "tocsin.tls.secretName" . }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "tocsin.tls.volumeMount" -}}
{{- if .root.Values.tls.enabled -}}
- name: tls
  mountPath: /etc/tocsin-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tocsin.tls.env" -}}
{{- if .root.Values.tls.enabled -}}
- name: TOCSIN_TLS_DIR
  value: /etc/tocsin-tls
- name: TOCSIN_HEALTH_PORT
  value: {{ .root.Values.tls.healthPort | quote }}
{{- else -}}
- name: TOCSIN_INSECURE_DEV
  value: "true"
{{- end }}
{{- end -}}

{{- define "tocsin.tls.probePort" -}}
{{- if .root.Values.tls.enabled -}}
{{- $port := int .root.Values.tls.healthPort -}}
{{- if or (eq $port (int .svc.grpcPort)) (eq $port (int .svc.metricsPort)) -}}
{{- fail (printf "tls.healthPort %d is also a port of services.%s: the plaintext health port needs its own" $port .name) -}}
{{- end -}}
{{- $port -}}
{{- else -}}
{{- .svc.grpcPort -}}
{{- end -}}
{{- end -}}
