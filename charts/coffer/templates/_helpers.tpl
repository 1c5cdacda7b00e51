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

{{/*
Where the metadata lives: `bundled`, `cloudnativepg` or `external`.

`postgresql.mode` wins when set. Charts before it had only `postgresql.enabled`
(default true) plus `externalDatabase`, so an empty mode is derived from that:
`enabled: false` means external, anything else bundled. Values that say two
different things fail the render instead of silently picking one database —
metadata written to the wrong database looks like data loss.
*/}}
{{- define "coffer.databaseMode" -}}
{{- $pg := .Values.postgresql -}}
{{- $mode := $pg.mode | default "" -}}
{{- $hasEnabled := hasKey $pg "enabled" -}}
{{- $external := or .Values.externalDatabase.url .Values.externalDatabase.existingSecret -}}
{{- if and $mode (not (has $mode (list "bundled" "cloudnativepg" "external"))) -}}
{{- fail (printf "postgresql.mode must be bundled, cloudnativepg or external (got %q)" $mode) -}}
{{- end -}}
{{- if and $mode $hasEnabled -}}
{{- if and $pg.enabled (ne $mode "bundled") -}}
{{- fail (printf "postgresql.enabled=true asks for the bundled database but postgresql.mode is %s: remove postgresql.enabled (mode replaces it)" $mode) -}}
{{- end -}}
{{- if and (not $pg.enabled) (eq $mode "bundled") -}}
{{- fail "postgresql.enabled=false contradicts postgresql.mode=bundled: remove postgresql.enabled (mode replaces it)" -}}
{{- end -}}
{{- end -}}
{{- if not $mode -}}
{{- $mode = ternary "external" "bundled" (and $hasEnabled (not $pg.enabled)) -}}
{{- end -}}
{{- if and $external (ne $mode "external") -}}
{{- fail (printf "externalDatabase is set but the metadata database is %s: set postgresql.mode=external (or postgresql.enabled=false) to use it, or clear externalDatabase.url/existingSecret" $mode) -}}
{{- end -}}
{{- if and (eq $mode "external") (not $external) -}}
{{- fail "an external metadata database (postgresql.mode=external or postgresql.enabled=false) needs externalDatabase.url or externalDatabase.existingSecret" -}}
{{- end -}}
{{- if eq $mode "cloudnativepg" -}}
{{- $cnpg := $pg.cloudnativepg -}}
{{- if and (gt (int $cnpg.synchronous.number) 0) (ge (int $cnpg.synchronous.number) (int $cnpg.instances)) -}}
{{- fail (printf "postgresql.cloudnativepg.synchronous.number (%d) must be below instances (%d): every commit waits for that many standbys (0: asynchronous, not for production)" (int $cnpg.synchronous.number) (int $cnpg.instances)) -}}
{{- end -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/* The CloudNativePG Secret with the owner's credentials (CNPG creates it). */}}
{{- define "coffer.cnpgAppSecret" -}}{{ include "coffer.postgresql" . }}-app{{- end -}}

{{/*
The metadata database connection (server and operator): COFFER_DATABASE_URL,
plus PGUSER/PGPASSWORD for CloudNativePG, whose generated password may hold
characters a URL would need escaped; sqlx reads them when the URL has none.
*/}}
{{- define "coffer.databaseEnv" -}}
{{- $mode := include "coffer.databaseMode" . -}}
{{- if eq $mode "bundled" }}
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
{{- else if eq $mode "cloudnativepg" }}
# Always the -rw Service: it follows the primary through failovers, so the pool
# reconnects to the new primary at the same address; -ro/-r replicas would
# refuse writes and could serve reads older than a write just acknowledged.
- name: PGUSER
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.cnpgAppSecret" . }}
      key: username
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.cnpgAppSecret" . }}
      key: password
- name: COFFER_DATABASE_URL
  value: "postgres://{{ include "coffer.postgresql" . }}-rw.{{ .Release.Namespace }}.svc:5432/{{ .Values.postgresql.database }}"
{{- else if .Values.externalDatabase.existingSecret }}
- name: COFFER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.urlKey }}
{{- else }}
- name: COFFER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.fullname" . }}-database
      key: url
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
