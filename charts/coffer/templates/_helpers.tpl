{{/* Names and labels shared by every object of the chart. */}}
{{- define "coffer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "coffer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "coffer.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "coffer.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "coffer.server" -}}{{ include "coffer.fullname" . }}-server{{- end -}}
{{- define "coffer.operator" -}}{{ include "coffer.fullname" . }}-operator{{- end -}}
{{- define "coffer.postgresql" -}}{{ include "coffer.fullname" . }}-postgresql{{- end -}}

{{/* The S3 endpoint written into application Secrets. */}}
{{- define "coffer.endpoint" -}}
{{- if .Values.server.endpoint -}}
{{ .Values.server.endpoint }}
{{- else -}}
{{ include "coffer.scheme" . }}://{{ include "coffer.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.server.service.port }}
{{- end -}}
{{- end -}}

{{/* http, or https when the server serves TLS (tls.enabled). */}}
{{- define "coffer.scheme" -}}{{ if .Values.tls.enabled }}https{{ else }}http{{ end }}{{- end -}}

{{/* The Secret holding the server certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "coffer.tlsSecretName" -}}
{{- if .Values.tls.existingSecret -}}
{{ .Values.tls.existingSecret }}
{{- else -}}
{{ include "coffer.server" . }}-tls
{{- end -}}
{{- end -}}

{{/* The Secret the operator copies ca.crt from into application Secrets: the
explicit operator.s3CaBundle, else the server's own TLS Secret. */}}
{{- define "coffer.caBundleSecretName" -}}
{{- if .Values.operator.s3CaBundle.secretName -}}
{{ .Values.operator.s3CaBundle.secretName }}
{{- else if .Values.tls.enabled -}}
{{ include "coffer.tlsSecretName" . }}
{{- end -}}
{{- end -}}

{{/* The COFFER_DATABASE_URL environment variable (server and operator). */}}
{{- define "coffer.databaseEnv" -}}
{{- if .Values.postgresql.enabled }}
{{- if .Values.postgresql.auth.existingSecret }}
- name: COFFER_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.auth.existingSecret }}
      key: password
- name: COFFER_DATABASE_URL
  value: "postgres://{{ .Values.postgresql.username }}:$(COFFER_DATABASE_PASSWORD)@{{ include "coffer.postgresql" . }}.{{ .Release.Namespace }}.svc.cluster.local:5432/{{ .Values.postgresql.database }}"
{{- else }}
- name: COFFER_DATABASE_URL
  value: "postgres://{{ .Values.postgresql.username }}@{{ include "coffer.postgresql" . }}.{{ .Release.Namespace }}.svc.cluster.local:5432/{{ .Values.postgresql.database }}"
{{- end }}
{{- else if .Values.externalDatabase.existingSecret }}
- name: COFFER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.urlKey }}
{{- else if .Values.externalDatabase.url }}
- name: COFFER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.fullname" . }}-database
      key: url
{{- else }}
{{- fail "postgresql.enabled=false needs externalDatabase.url or externalDatabase.existingSecret" }}
{{- end }}
{{- end -}}

{{/* The Secret holding the cluster secret shared by the server pods. */}}
{{- define "coffer.clusterSecretName" -}}
{{- .Values.server.clusterSecret.existingSecret | default (printf "%s-cluster" (include "coffer.fullname" .)) -}}
{{- end }}

{{/* The Secret holding the master key (server pods and operator). */}}
{{- define "coffer.masterKeySecretName" -}}
{{- .Values.masterKey.existingSecret | default (printf "%s-master-key" (include "coffer.fullname" .)) -}}
{{- end }}

{{/* COFFER_MASTER_KEY from the master-key Secret. */}}
{{- define "coffer.masterKeyEnv" -}}
- name: COFFER_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.masterKeySecretName" . }}
      key: masterKey
{{- end -}}
