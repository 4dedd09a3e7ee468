{{/* The release's full name: the release name, prefixed unless it already holds the chart name. */}}
{{- define "mtls-guard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "mtls-guard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mtls-guard
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of the guard's pods; immutable in the Deployment, so kept as in 0.1.0. */}}
{{- define "mtls-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "mtls-guard.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "mtls-guard.fullname" .) -}}
{{- end -}}

{{- define "mtls-guard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "v%s" .Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}

{{- define "mtls-guard.rootNamespace" -}}
{{- .Values.config.rootNamespace | default (ternary "aks-istio-system" "istio-system" .Values.global.aks) -}}
{{- end -}}

{{/* The Secret with tls.crt, tls.key (and ca.crt) that the pods mount. */}}
{{- define "mtls-guard.servingSecret" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- .Values.certificates.secret.name | default (printf "%s-serving-cert" (include "mtls-guard.fullname" .)) -}}
{{- else -}}
{{- printf "%s-serving-cert" (include "mtls-guard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* DNS names the API server dials. */}}
{{- define "mtls-guard.dnsNames" -}}
{{- $svc := printf "%s.%s.svc" (include "mtls-guard.fullname" .) .Release.Namespace -}}
{{- list $svc (printf "%s.cluster.local" $svc) | toJson -}}
{{- end -}}

{{/*
The generated CA and serving certificate (certificates.mode=generate), as
JSON {ca, crt, key} in PEM. Generated once per render and cached in the
root context, so the Secret and the webhook's caBundle agree; an existing
Secret is kept (lookup), so upgrades do not rotate the CA.
*/}}
{{- define "mtls-guard.generatedCerts" -}}
{{- if not (hasKey . "mtlsGuardGeneratedCerts") -}}
{{- $certs := dict -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "mtls-guard.servingSecret" .) -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") (index $existing.data "tls.crt") (index $existing.data "tls.key") -}}
{{- $certs = dict "ca" (index $existing.data "ca.crt" | b64dec) "crt" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) -}}
{{- else -}}
{{- $days := int .Values.certificates.generate.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "mtls-guard.fullname" .)) $days -}}
{{- $dns := include "mtls-guard.dnsNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (first $dns) nil $dns $days $ca -}}
{{- $certs = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key -}}
{{- end -}}
{{- $_ := set . "mtlsGuardGeneratedCerts" $certs -}}
{{- end -}}
{{- index . "mtlsGuardGeneratedCerts" | toJson -}}
{{- end -}}

{{/* The webhook's caBundle, base64, or empty when cert-manager injects it or the operator patches it in. */}}
{{- define "mtls-guard.caBundle" -}}
{{- if eq .Values.certificates.mode "generate" -}}
{{- (include "mtls-guard.generatedCerts" . | fromJson).ca | b64enc -}}
{{- else if eq .Values.certificates.mode "secret" -}}
{{- .Values.certificates.secret.caBundle -}}
{{- end -}}
{{- end -}}

{{/* Arguments of `mtls-guard serve`: always the ones the pod spec depends on, the rest only when they differ from the binary's defaults. */}}
{{- define "mtls-guard.args" -}}
{{- $c := .Values.config -}}
- serve
- --cert-dir=/certs
- --port={{ $c.port }}
- --metrics-bind-address={{ ternary (printf ":%v" .Values.metrics.port) "0" .Values.metrics.enabled }}
- --health-probe-bind-address=:{{ $c.healthProbePort }}
{{- $root := include "mtls-guard.rootNamespace" . }}
{{- if ne $root "istio-system" }}
- --root-namespace={{ $root }}
{{- end }}
{{- if ne $c.sidecarMode "native" }}
- --sidecar-mode={{ $c.sidecarMode }}
{{- end }}
{{- $exclude := join "," $c.excludeNamespaces }}
{{- if ne $exclude "kube-system,kube-public,kube-node-lease,local-path-storage" }}
- --exclude-namespaces={{ $exclude }}
{{- end }}
{{- if not $c.allowOverride }}
- --allow-override=false
{{- end }}
{{- $vwc := include "mtls-guard.fullname" . }}
{{- if ne $vwc "mtls-guard" }}
- --webhook-config-name={{ $vwc }}
{{- end }}
{{- if include "mtls-guard.clientCAKey" . }}
- --client-ca-file=/client-ca/{{ .Values.webhook.clientCA.key }}
{{- end }}
{{- if and .Values.metrics.enabled (not .Values.metrics.secure) }}
- --metrics-secure=false
{{- end }}
{{- if $c.enableHTTP2 }}
- --enable-http2
{{- end }}
{{- if ne $c.readHeaderTimeout "10s" }}
- --read-header-timeout={{ $c.readHeaderTimeout }}
{{- end }}
{{- if ne $c.maxCacheStaleness "15s" }}
- --max-cache-staleness={{ $c.maxCacheStaleness }}
{{- end }}
{{- if ne $c.gracefulShutdownTimeout "30s" }}
- --graceful-shutdown-timeout={{ $c.gracefulShutdownTimeout }}
{{- end }}
{{- if ne $c.pprofBindAddress "0" }}
- --pprof-bind-address={{ $c.pprofBindAddress }}
{{- end }}
{{- with $c.prometheus }}
{{- if .url }}
- --prometheus-url={{ .url }}
{{- end }}
{{- if .caFile }}
- --prometheus-ca-file={{ .caFile }}
{{- end }}
{{- if .bearerTokenFile }}
- --prometheus-bearer-token-file={{ .bearerTokenFile }}
{{- end }}
{{- if ne .auth "none" }}
- --prometheus-auth={{ .auth }}
{{- end }}
{{- end }}
{{- with $c.plaintext }}
{{- if ne .refresh "1m" }}
- --plaintext-refresh={{ .refresh }}
{{- end }}
{{- if ne .window "24h" }}
- --plaintext-window={{ .window }}
{{- end }}
{{- if ne (int .minRequests) 1 }}
- --plaintext-min-requests={{ .minRequests }}
{{- end }}
{{- if ne .maxAge "5m" }}
- --plaintext-max-age={{ .maxAge }}
{{- end }}
{{- if ne .unavailable "allow" }}
- --plaintext-unavailable={{ .unavailable }}
{{- end }}
{{- end }}
{{- with include "mtls-guard.action" .Values.unmeshed.pods }}
{{- if ne . "warn" }}
- --unmeshed-pods={{ . }}
{{- end }}
{{- end }}
{{- with include "mtls-guard.action" .Values.unmeshed.workloads }}
{{- if ne . "warn" }}
- --unmeshed-workloads={{ . }}
{{- end }}
{{- end }}
{{- with $c.log }}
{{- if .level }}
- --zap-log-level={{ .level }}
{{- end }}
{{- if .encoder }}
- --zap-encoder={{ .encoder }}
{{- end }}
{{- if .devel }}
- --zap-devel
{{- end }}
{{- if .stacktraceLevel }}
- --zap-stacktrace-level={{ .stacktraceLevel }}
{{- end }}
{{- if .timeEncoding }}
- --zap-time-encoding={{ .timeEncoding }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Non-empty when the arrivals webhook is on: unmeshed pods or workloads are not both off. */}}
{{- define "mtls-guard.arrivals" -}}
{{- if or (ne (include "mtls-guard.action" .Values.unmeshed.pods) "off") (ne (include "mtls-guard.action" .Values.unmeshed.workloads) "off") -}}true{{- end -}}
{{- end -}}

{{/* An unmeshed.* action; YAML reads an unquoted off as false. */}}
{{- define "mtls-guard.action" -}}
{{- if eq (toString .) "false" -}}off{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* Non-empty when a client CA is mounted. */}}
{{- define "mtls-guard.clientCAKey" -}}
{{- with .Values.webhook.clientCA -}}
{{- if or .secretName .configMapName -}}{{ .key }}{{- end -}}
{{- end -}}
{{- end -}}
