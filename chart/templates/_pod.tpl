{{/*
The pod template of the workload, StatefulSet (SQLite) or Deployment
(PostgreSQL): the same pods either way, but for where the gallery lives.
Usage: include "kubevision.podTemplate" . | nindent 4
*/}}
{{- define "kubevision.podTemplate" -}}
{{- $dataDir := "/var/lib/kubevision" -}}
{{- $tlsDir := "/etc/kubevision/tls" -}}
{{- $dbCaDir := "/etc/kubevision/db-ca" -}}
{{- $kioskCaDir := "/etc/kubevision/kiosk-ca" -}}
{{- $identitiesDir := "/etc/kubevision/identities" -}}
{{- $kioskCa := .Values.auth.kioskCA.certManager -}}
{{- $identities := include "kubevision.identities" . -}}
{{- $postgres := include "kubevision.postgres" . -}}
{{- $dbCa := and $postgres (include "kubevision.storeCaSecretName" .) -}}
metadata:
  labels:
    {{- include "kubevision.labels" . | nindent 4 }}
  {{- $secrets := print (include "kubevision.createsTlsSecret" .) (include "kubevision.createsTokenSecret" .) (include "kubevision.createsIdentitiesSecret" .) }}
  {{- if or $secrets .Values.podAnnotations }}
  annotations:
    {{- if $secrets }}
    # Restarts the pods when the chart's Secrets change: the token reaches
    # the process as an environment variable, read once at start.
    checksum/secrets: {{ include (print $.Template.BasePath "/secrets.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  # The service never talks to the Kubernetes API.
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with include "kubevision.scheduling" . | trim }}
  {{- nindent 2 . }}
  {{- end }}
  containers:
    - name: offload
      image: {{ include "kubevision.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      env:
        - name: KUBEVISION_LISTEN
          value: "0.0.0.0:{{ .Values.ports.grpc }}"
        - name: KUBEVISION_METRICS_LISTEN
          value: "0.0.0.0:{{ .Values.ports.metrics }}"
        - name: KUBEVISION_DATA_DIR
          value: {{ $dataDir }}
        - name: KUBEVISION_BACKEND
          value: {{ include "kubevision.backend" . }}
        - name: KUBEVISION_RECOGNISER
          value: {{ .Values.recogniser }}
        {{- if $postgres }}
        # The gallery of record: PostgreSQL, shared by every replica.
        - name: KUBEVISION_STORE
          valueFrom:
            secretKeyRef:
              name: {{ include "kubevision.storeSecretName" . }}
              key: {{ include "kubevision.storeSecretKey" . }}
        {{- if $dbCa }}
        # With a CA the service requires TLS to the database and verifies it.
        - name: KUBEVISION_STORE_CA_FILE
          value: {{ $dbCaDir }}/{{ include "kubevision.storeCaSecretKey" . }}
        {{- end }}
        - name: KUBEVISION_CATCH_UP_SECS
          value: {{ .Values.gallery.catchUpSeconds | quote }}
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: KUBEVISION_TLS_CERT
          value: {{ $tlsDir }}/tls.crt
        - name: KUBEVISION_TLS_KEY
          value: {{ $tlsDir }}/tls.key
        {{- if .Values.tls.mtls }}
        - name: KUBEVISION_TLS_CLIENT_CA
          value: {{ if $kioskCa }}{{ $kioskCaDir }}{{ else }}{{ $tlsDir }}{{ end }}/ca.crt
        {{- end }}
        {{- end }}
        {{- if $identities }}
        # A directory of identities files, read again when Kubernetes
        # updates the Secrets (a registered kiosk gets in without a restart).
        - name: KUBEVISION_IDENTITIES
          value: {{ $identitiesDir }}
        {{- end }}
        {{- if or .Values.auth.token .Values.auth.existingSecret }}
        - name: KUBEVISION_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "kubevision.tokenSecretName" . }}
              key: {{ if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}token{{ end }}
        {{- end }}
        {{- with .Values.auth.plantPepperId }}
        # Only hashes keyed with the plant's pepper are accepted.
        - name: KUBEVISION_PLANT_PEPPER_ID
          value: {{ . | quote }}
        {{- end }}
        {{- if .Values.auth.allowUnauthenticated }}
        # The trial opt-in: without credentials the service refuses to start.
        - name: KUBEVISION_ALLOW_UNAUTHENTICATED
          value: "true"
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ .Values.ports.grpc }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.ports.metrics }}
          protocol: TCP
      # Startup allows for loading the gallery (with PostgreSQL: catching up
      # with the database) and initialising CUDA before liveness may restart
      # the container.
      startupProbe:
        {{- include "kubevision.probeAction" . | nindent 8 }}
        periodSeconds: 5
        failureThreshold: 60
      livenessProbe:
        {{- include "kubevision.probeAction" . | nindent 8 }}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        {{- include "kubevision.probeAction" . | nindent 8 }}
        periodSeconds: 5
        failureThreshold: 2
      resources:
        {{- include "kubevision.resources" . | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: {{ $dataDir }}
        # The root filesystem is read-only; /tmp is the one other place
        # the service writes to.
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: {{ $tlsDir }}
          readOnly: true
        {{- end }}
        {{- if $dbCa }}
        - name: db-ca
          mountPath: {{ $dbCaDir }}
          readOnly: true
        {{- end }}
        {{- if $kioskCa }}
        - name: kiosk-ca
          mountPath: {{ $kioskCaDir }}
          readOnly: true
        {{- end }}
        {{- if $identities }}
        - name: identities
          mountPath: {{ $identitiesDir }}
          readOnly: true
        {{- end }}
  volumes:
    {{- if or $postgres (not .Values.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "kubevision.tlsSecretName" . }}
    {{- end }}
    {{- if $dbCa }}
    # Only the certificate: a CloudNativePG <cluster>-ca Secret also holds the CA's key.
    - name: db-ca
      secret:
        secretName: {{ include "kubevision.storeCaSecretName" . }}
        items:
          - key: {{ include "kubevision.storeCaSecretKey" . }}
            path: {{ include "kubevision.storeCaSecretKey" . }}
    {{- end }}
    {{- if $kioskCa }}
    # Only the CA's certificate: its Secret also holds the CA's key.
    - name: kiosk-ca
      secret:
        secretName: {{ include "kubevision.kioskCaName" . }}
        items:
          - key: ca.crt
            path: ca.crt
    {{- end }}
    {{- if $identities }}
    - name: identities
      projected:
        sources:
          {{- if include "kubevision.createsIdentitiesSecret" . }}
          - secret:
              name: {{ include "kubevision.identitiesSecretName" . }}
          {{- end }}
          {{- with .Values.auth.existingIdentitiesSecret }}
          - secret:
              name: {{ . }}
          {{- end }}
          {{- if $kioskCa }}
          # Written by `kubevision cluster register-kiosk`; absent until the first registration.
          - secret:
              name: {{ include "kubevision.kiosksSecretName" . }}
              optional: true
          {{- end }}
    {{- end }}
{{- end }}
