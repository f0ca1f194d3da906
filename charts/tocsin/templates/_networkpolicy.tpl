{{/*
Pieces of templates/networkpolicy.yaml.
*/}}

{{/* The services allowed to call one service, as a YAML list (default: alerting). Context: dict "root" $ "name" <service>. */}}
{{- define "tocsin.networkPolicy.callers" -}}
{{- $callers := .root.Values.networkPolicy.callers -}}
{{- if hasKey $callers .name -}}
{{- toYaml (get $callers .name | default list) -}}
{{- else -}}
{{- toYaml (list "alerting") -}}
{{- end -}}
{{- end -}}

{{/* Egress rules to DNS and the named datastores. Context: dict "root" $ "stores" (list "postgresql" "redis"). */}}
{{- define "tocsin.networkPolicy.datastoreEgress" -}}
{{- $egress := .root.Values.networkPolicy.egress -}}
# DNS: the datastores and the other services are found by name.
- ports:
    {{- toYaml $egress.dns.ports | nindent 4 }}
  {{- with $egress.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- range $store := .stores }}
{{- $cfg := get $egress $store }}
- ports:
    - port: {{ required (printf "networkPolicy.egress.%s.port is required" $store) $cfg.port }}
      protocol: TCP
  {{- with $cfg.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* A service's endpoints outside the release (NetworkPolicyEgressRule entries), as given. */}}
{{- define "tocsin.networkPolicy.externalEgress" -}}
# Outside the release (networkPolicy.egress.external).
{{ toYaml . }}
{{- end -}}

{{/*
Refuse values whose SMS policy would cut a configured SMSC off: every smpp.operators port must
be open in networkPolicy.egress.external.<service>. Context: dict "root" $ "name" <service>.
*/}}
{{- define "tocsin.networkPolicy.smscCovered" -}}
{{- $rules := get .root.Values.networkPolicy.egress.external .name | default list -}}
{{- range $op, $cfg := .root.Values.smpp.operators -}}
{{- $port := int ($cfg.port | default 2775) -}}
{{- $open := false -}}
{{- range $rule := $rules -}}
{{- range $p := $rule.ports | default list -}}
{{- if and (eq ($p.protocol | default "TCP") "TCP") (le (int $p.port) $port) (ge (int ($p.endPort | default $p.port)) $port) -}}
{{- $open = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $open -}}
{{- fail (printf "networkPolicy.egress.external.%s opens no TCP port %d: the SMSC of smpp.operators.%s would be unreachable" $.name $port $op) -}}
{{- end -}}
{{- end -}}
{{- end -}}
