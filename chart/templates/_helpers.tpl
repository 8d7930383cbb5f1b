{{/*
Names, labels and the derived settings every template shares. Nothing here
depends on the cluster, the clock or randomness: the same values always
render the same manifests (the Rust renderer is compared against them).
*/}}

{{- define "kubevision.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name alone when it already contains the chart name. */}}
{{- define "kubevision.fullname" -}}
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

{{- define "kubevision.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubevision.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubevision.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubevision.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: offload
app.kubernetes.io/part-of: kubevision
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
metadata name, namespace and labels of one object.
Usage: include "kubevision.metadata" (list $ "object-name")
*/}}
{{- define "kubevision.metadata" -}}
{{- $ctx := index . 0 -}}
name: {{ index . 1 }}
namespace: {{ $ctx.Release.Namespace }}
labels:
  {{- include "kubevision.labels" $ctx | nindent 2 }}
{{- end }}

{{/* StatefulSet pods get stable DNS names through this headless Service. */}}
{{- define "kubevision.headlessName" -}}
{{- include "kubevision.fullname" . }}-headless
{{- end }}

{{/* The CloudNativePG Cluster: <fullname>-db, short enough for its Services (<cluster>-rw). */}}
{{- define "kubevision.cnpgName" -}}
{{- printf "%s-db" (include "kubevision.fullname" . | trunc 50 | trimSuffix "-") }}
{{- end }}

{{- define "kubevision.postgres" -}}
{{- if eq .Values.gallery.store "postgres" }}true{{ end }}
{{- end }}

{{- define "kubevision.cnpg" -}}
{{- if and (include "kubevision.postgres" .) .Values.gallery.postgres.cloudnativepg.enabled }}true{{ end }}
{{- end }}

{{/*
The Secret and key holding the connection string (KUBEVISION_STORE), and
those of the database's CA (KUBEVISION_STORE_CA_FILE; empty: none). A
CloudNativePG cluster writes <cluster>-app (key uri) and <cluster>-ca (key ca.crt).
*/}}
{{- define "kubevision.storeSecretName" -}}
{{- if include "kubevision.cnpg" . }}{{ include "kubevision.cnpgName" . }}-app{{ else }}{{ .Values.gallery.postgres.existingSecret }}{{ end }}
{{- end }}

{{- define "kubevision.storeSecretKey" -}}
{{- if include "kubevision.cnpg" . }}uri{{ else }}{{ .Values.gallery.postgres.existingSecretKey }}{{ end }}
{{- end }}

{{- define "kubevision.storeCaSecretName" -}}
{{- if include "kubevision.cnpg" . }}{{ include "kubevision.cnpgName" . }}-ca{{ else }}{{ .Values.gallery.postgres.caSecret.name }}{{ end }}
{{- end }}

{{- define "kubevision.storeCaSecretKey" -}}
{{- if include "kubevision.cnpg" . }}ca.crt{{ else }}{{ .Values.gallery.postgres.caSecret.key }}{{ end }}
{{- end }}

{{/*
The rules of values.schema.json that span several keys, in the same words,
for renders that skip the schema (--skip-schema-validation). The schema can
only name a "missing property", so the explanation is that property's name.
*/}}
{{- define "kubevision.validate" -}}
{{- $g := .Values.gallery -}}
{{- $pg := $g.postgres -}}
{{- if and (eq $g.store "sqlite") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "replicaCount > 1 and autoscaling.enabled need gallery.store=postgres: with SQLite every replica would keep a gallery of its own" }}
{{- end }}
{{- if and (eq $g.store "postgres") (not $pg.existingSecret) (not $pg.cloudnativepg.enabled) }}
{{- fail "set gallery.postgres.existingSecret or gallery.postgres.cloudnativepg.enabled=true: gallery.store=postgres needs a connection string to the database" }}
{{- end }}
{{- if and $pg.existingSecret $pg.cloudnativepg.enabled }}
{{- fail "set only one of gallery.postgres.existingSecret and gallery.postgres.cloudnativepg.enabled: they name two different databases" }}
{{- end }}
{{- if and $pg.caSecret.name $pg.cloudnativepg.enabled }}
{{- fail "leave gallery.postgres.caSecret empty with gallery.postgres.cloudnativepg.enabled: the service trusts the CA that CloudNativePG made for the cluster" }}
{{- end }}
{{- if and (eq $g.store "sqlite") $pg.cloudnativepg.enabled }}
{{- fail "gallery.postgres.cloudnativepg.enabled needs gallery.store=postgres: the database cluster would be unused with SQLite" }}
{{- end }}
{{- if and (eq .Values.recogniser "dlib") (eq (include "kubevision.backend" .) "cuda") }}
{{- fail "recogniser=dlib needs backend=cpu or gpu.enabled=false: the CUDA backend matches lbph templates only" }}
{{- end }}
{{- $a := .Values.auth -}}
{{- if and $a.kioskCA.certManager (not (and .Values.tls.enabled .Values.tls.mtls)) }}
{{- fail "set tls.enabled=true and tls.mtls=true for auth.kioskCA.certManager: kiosks prove themselves with certificates from the kiosk CA over mutual TLS" }}
{{- end }}
{{- if not (or $a.identities $a.existingIdentitiesSecret $a.kioskCA.certManager $a.token $a.existingSecret .Values.tls.mtls $a.allowUnauthenticated) }}
{{- fail "set auth.identities, auth.existingIdentitiesSecret, auth.kioskCA.certManager=true, a token or tls.mtls (or auth.allowUnauthenticated=true for a trial): without credentials anyone who reaches the port can change the gallery" }}
{{- end }}
{{- if not .Values.tls.mtls }}
{{- range $a.identities }}
{{- if .certificate }}
{{- fail "set tls.mtls=true for identities with a certificate: the service can verify client certificates only with mutual TLS" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubevision.tlsSecretName" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "kubevision.fullname" .)) }}
{{- end }}

{{- define "kubevision.tokenSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-token" (include "kubevision.fullname" .)) }}
{{- end }}

{{- define "kubevision.ingressTlsSecretName" -}}
{{- .Values.ingress.tlsSecretName | default (printf "%s-ingress-tls" (include "kubevision.fullname" .)) }}
{{- end }}

{{/* The Issuer the Certificate uses: the configured one or the chart's own. */}}
{{- define "kubevision.issuerRef" -}}
{{- with .Values.ingress.certManager.issuerRef }}
{{- if .name -}}
name: {{ .name }}
kind: {{ .kind }}
{{- else -}}
name: {{ include "kubevision.fullname" $ }}
kind: Issuer
{{- end }}
{{- end }}
group: cert-manager.io
{{- end }}

{{/* The CUDA build when the pod gets a GPU, the plain (CPU) build otherwise. */}}
{{- define "kubevision.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.gpu.enabled }}{{ $tag = print $tag .Values.image.cudaTagSuffix }}{{ end -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end }}

{{- define "kubevision.backend" -}}
{{- .Values.backend | default (ternary "cuda" "cpu" .Values.gpu.enabled) }}
{{- end }}

{{/* Whether the chart itself writes the TLS / token / identities Secret (else: none or an existing one). */}}
{{- define "kubevision.createsTlsSecret" -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not (include "kubevision.issuesServerCertificate" .)) }}true{{ end }}
{{- end }}

{{- define "kubevision.createsIdentitiesSecret" -}}
{{- if .Values.auth.identities }}true{{ end }}
{{- end }}

{{/*
The kiosk CA (auth.kioskCA.certManager): its Issuer, Certificate and Secret
share one name; the Secret <fullname>-kiosks holds the registered kiosks'
identities (one key each, written by `kubevision cluster register-kiosk`).
*/}}
{{- define "kubevision.kioskCaName" -}}
{{- include "kubevision.fullname" . }}-kiosk-ca
{{- end }}

{{- define "kubevision.kiosksSecretName" -}}
{{- include "kubevision.fullname" . }}-kiosks
{{- end }}

{{- define "kubevision.identitiesSecretName" -}}
{{- include "kubevision.fullname" . }}-identities
{{- end }}

{{/* cert-manager issues the service's own certificate from the kiosk CA when no other is given. */}}
{{- define "kubevision.issuesServerCertificate" -}}
{{- if and .Values.auth.kioskCA.certManager .Values.tls.enabled (not .Values.tls.existingSecret) (not .Values.tls.cert) }}true{{ end }}
{{- end }}

{{/* Whether the service gets --identities (a directory of identities files). */}}
{{- define "kubevision.identities" -}}
{{- with .Values.auth }}{{ if or .identities .existingIdentitiesSecret .kioskCA.certManager }}true{{ end }}{{ end }}
{{- end }}

{{/*
The identities file of auth.identities, in the service's format (keys
sorted, as toJson writes them; cluster/src/render writes the same bytes).
*/}}
{{- define "kubevision.identitiesJson" -}}
{{- $out := list -}}
{{- range .Values.auth.identities -}}
{{- $e := dict "name" .name "scopes" .scopes -}}
{{- with .certificate }}{{ $_ := set $e "certificate" . }}{{ end -}}
{{- with .tokenSha256 }}{{ $_ := set $e "token_sha256" . }}{{ end -}}
{{- $out = append $out $e -}}
{{- end -}}
{{- dict "identities" $out | toJson -}}
{{- end }}

{{- define "kubevision.createsTokenSecret" -}}
{{- if and .Values.auth.token (not .Values.auth.existingSecret) }}true{{ end }}
{{- end }}

{{/*
One probe action for startup, liveness and readiness. kubelet's native gRPC
probe (grpc.health.v1) speaks plain-text HTTP/2 only, so with TLS on the port
the probes fall back to a TCP connect: it needs no client certificate (works
with mTLS too) and no probe binary in the image, at the price of not seeing
the health service's SERVING status.
*/}}
{{- define "kubevision.probeAction" -}}
{{- if .Values.tls.enabled -}}
tcpSocket:
  port: {{ .Values.ports.grpc }}
{{- else -}}
grpc:
  port: {{ .Values.ports.grpc }}
{{- end }}
{{- end }}

{{/* Node placement: GPU node selector and tolerations, then the hybrid site affinity. */}}
{{- define "kubevision.scheduling" -}}
{{- $gpu := .Values.gpu -}}
{{- $nodeSelector := deepCopy .Values.nodeSelector -}}
{{- $tolerations := .Values.tolerations -}}
{{- if $gpu.enabled }}
{{- $nodeSelector = merge $nodeSelector $gpu.nodeSelector }}
{{- $tolerations = concat $gpu.tolerations $tolerations }}
{{- with $gpu.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.placement }}
{{- if .site }}
{{- if and $gpu.enabled (hasKey $gpu.nodeSelector .labelKey) }}
{{- fail (printf "placement.site=%s cannot be combined with gpu.enabled while GPU nodes are selected by the same label %q: label the sites with another key and set placement.labelKey" .site .labelKey) }}
{{- end }}
{{- $term := dict "matchExpressions" (list (dict "key" .labelKey "operator" "In" "values" (list .site))) }}
affinity:
  nodeAffinity:
    {{- if .required }}
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        {{- list $term | toYaml | nindent 8 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        preference:
          {{- toYaml $term | nindent 10 }}
    {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Container resources, plus the GPU limit (requests default to limits for extended resources). */}}
{{- define "kubevision.resources" -}}
{{- $resources := deepCopy .Values.resources -}}
{{- if .Values.gpu.enabled }}
{{- $limits := $resources.limits | default dict }}
{{- $_ := set $limits .Values.gpu.resourceName (toString .Values.gpu.count) }}
{{- $_ = set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}
