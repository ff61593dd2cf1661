{{/* vim: set filetype=mustache: */}}

{{- define "logtally.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release; object names append -<component>. */}}
{{- define "logtally.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "logtally.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: (dict "root" $ "component" "ingest") */}}
{{- define "logtally.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logtally.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels: (dict "root" $ "component" "ingest") */}}
{{- define "logtally.labels" -}}
helm.sh/chart: {{ include "logtally.chart" .root }}
{{ include "logtally.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: logtally
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "logtally.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logtally.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "logtally.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* True when this chart runs the NATS StatefulSet. */}}
{{- define "logtally.natsInternal" -}}
{{- if and (not .Values.allInOne.enabled) (not .Values.nats.external.url) }}true{{ end }}
{{- end }}

{{- define "logtally.nats.fullname" -}}
{{- printf "%s-nats" (include "logtally.fullname" .) }}
{{- end }}

{{- define "logtally.nats.headless" -}}
{{- printf "%s-nats-headless" (include "logtally.fullname" .) }}
{{- end }}

{{/* Client URL(s) of NATS for the stages (tls:// with nats.tls on the chart's NATS). */}}
{{- define "logtally.natsURL" -}}
{{- if .Values.nats.external.url }}
{{- .Values.nats.external.url }}
{{- else }}
{{- printf "%s://%s:4222" (ternary "tls" "nats" (and .Values.nats.tls.enabled true)) (include "logtally.nats.fullname" .) }}
{{- end }}
{{- end }}

{{/* Replicas of streams and buckets (-nats.replicas). */}}
{{- define "logtally.natsReplicas" -}}
{{- if .Values.nats.external.url }}
{{- .Values.nats.external.replicas }}
{{- else }}3{{- end }}
{{- end }}

{{/*
Config file of a stage: (dict "root" $ "component" "ingest" "values" .Values.ingest).
Global `config`, then the stage's `config`, then the settings owned by the chart.
*/}}
{{- define "logtally.config" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $cfg := deepCopy (default dict $v.config) }}
{{- $cfg = mergeOverwrite $cfg (deepCopy (default dict .values.config)) }}
{{- $owned := dict
      "http" (dict "addr" (printf ":%d" (int $v.ports.http)))
      "shutdown" (dict "timeout" (printf "%ds" (int $v.shutdownTimeoutSeconds))) }}
{{- if eq .component "allinone" }}
{{- $_ := set $owned "nats" (dict "url" "" "replicas" 1) }}
{{- $_ := set $owned "data" (dict "dir" "/data") }}
{{- else }}
{{- $_ := set $owned "nats" (dict "url" (include "logtally.natsURL" $root) "replicas" (int (include "logtally.natsReplicas" $root))) }}
{{- end }}
{{- if or (eq .component "query") (eq .component "allinone") }}
{{- $_ := set $owned "grpc" (dict "addr" (printf ":%d" (int $v.ports.grpc))) }}
{{- end }}
{{- if include "logtally.readsRules" . }}
{{- $_ := set $owned "rules" (dict "file" (printf "%s/rules.yaml" (include "logtally.rulesDir" .))) }}
{{- end }}
{{- if include "logtally.runsExport" . }}
{{- $e := $v.export }}
{{- $exp := dict "interval" $e.interval }}
{{- if $e.parquet.enabled }}
{{- $_ := set $exp "parquet" (dict "dir" (include "logtally.parquetDir" .) "close-after" $e.parquet.closeAfter) }}
{{- end }}
{{- $_ := set $owned "export" $exp }}
{{- end }}
{{- if or (eq .component "ingest") (eq .component "allinone") }}
{{- $ing := deepCopy (default dict (get $cfg "ingest")) }}
{{- $_ := set $ing "tcp" (mergeOverwrite (default dict (get $ing "tcp")) (dict "addr" (printf ":%d" (int $v.ports.tcp)))) }}
{{- $_ := set $ing "syslog" (mergeOverwrite (default dict (get $ing "syslog")) (dict "addr" (printf ":%d" (int $v.ports.syslog)))) }}
{{- $_ := set $owned "ingest" $ing }}
{{- end }}
{{- $owned = mergeOverwrite $owned (include "logtally.securityConfig" . | fromJson) }}
{{- $cfg = mergeOverwrite $cfg $owned }}
{{- toYaml $cfg }}
{{- end }}

{{/* Pod anti-affinity by node for a component: (dict "root" $ "component" "x" "mode" "soft|hard|none") */}}
{{- define "logtally.podAntiAffinity" -}}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "logtally.selectorLabels" . | nindent 10 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "logtally.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* Affinity: the user's affinity when set, else the anti-affinity of the mode. */}}
{{- define "logtally.affinity" -}}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if and .values.podAntiAffinity (ne .values.podAntiAffinity "none") }}
affinity:
  {{- include "logtally.podAntiAffinity" (dict "root" .root "component" .component "mode" .values.podAntiAffinity) | trim | nindent 2 }}
{{- end }}
{{- end }}

{{/* Checks of values that the schema cannot express. */}}
{{- define "logtally.validate" -}}
{{- $v := .Values }}
{{- $parts := 32 }}
{{- with $v.config.parser }}{{ with .partitions }}{{ $parts = int . }}{{ end }}{{ end }}
{{- if and (not $v.allInOne.enabled) $v.aggregator.autoscaling.enabled (gt (int $v.aggregator.autoscaling.maxReplicas) $parts) }}
{{- fail (printf "aggregator.autoscaling.maxReplicas (%d) exceeds the %d partitions: extra aggregators would sit idle" (int $v.aggregator.autoscaling.maxReplicas) $parts) }}
{{- end }}
{{- if and (not $v.allInOne.enabled) (not $v.aggregator.autoscaling.enabled) (gt (int $v.aggregator.replicaCount) $parts) }}
{{- fail (printf "aggregator.replicaCount (%d) exceeds the %d partitions" (int $v.aggregator.replicaCount) $parts) }}
{{- end }}
{{- range $k := list "shutdown" "nats" "data" }}
{{- if hasKey (default dict $v.config) $k }}
{{- fail (printf "config.%s is set by the chart (see shutdownTimeoutSeconds, nats.*, allInOne.persistence)" $k) }}
{{- end }}
{{- end }}
{{- if hasKey (default dict $v.config) "rules" }}
{{- fail "config.rules is set by the chart: the rules file is the ConfigMap of detector.rules" }}
{{- end }}
{{- include "logtally.validateExport" . }}
{{- include "logtally.validateRules" . }}
{{- if and (include "logtally.natsInternal" .) (lt (int $v.nats.replicas) 3) }}
{{- fail "nats.replicas must be at least 3 (a JetStream cluster needs a quorum); use allInOne.enabled for a single node" }}
{{- end }}
{{- include "logtally.validateSecurity" . }}
{{- end }}

{{/* Components that read the rules file: the detector, and query for its allow list and mode. */}}
{{- define "logtally.readsRules" -}}
{{- if has .component (list "detector" "query" "allinone") }}true{{ end }}
{{- end }}

{{/* Mount directory of the rules ConfigMap (-rules.file=<dir>/rules.yaml). */}}
{{- define "logtally.rulesDir" -}}/etc/logtally-rules{{- end }}

{{/*
Content of rules.yaml from detector.rules: YAML text (e.g. --set-file
detector.rules=rules.yaml) as it is, a mapping (mode, allow, rules) as YAML,
nothing: a file of comments only, which the binary reads as no rules.
*/}}
{{- define "logtally.rulesFile" -}}
{{- $r := .Values.detector.rules }}
{{- if kindIs "string" $r }}
{{- $r }}
{{- else if $r }}
# detector.rules of the Helm release (docs/decisions.md)
{{ toYaml $r }}
{{- else }}
# No rules: the detector decides nothing. Set detector.rules (a mapping, or
# YAML text with --set-file detector.rules=rules.yaml), e.g.
#
# mode: enforce            # or simulate: decisions are listed, never served
# allow:                   # never banned, also not by hand
#   - 10.0.0.0/8
# rules:
#   - name: http-flood
#     range: 1m            # sliding range, whole minutes, current one included
#     threshold: 600       # a decision when the count over the range is above it
#     ban: 10m             # first ban; repeat offenders get ban x factor^n
#     class: requests      # requests, 4xx, 5xx, auth_failure or bytes
#   - name: ssh-bruteforce
#     range: 10m
#     threshold: 20
#     ban: 1h
#     class: auth_failure
#     escalation: {factor: 4, max: 7d}
{{- end }}
{{- end }}

{{/* Checks of detector.rules given as text, which the schema cannot look into. */}}
{{- define "logtally.validateRules" -}}
{{- $r := .Values.detector.rules }}
{{- if and (kindIs "string" $r) (trim $r) }}
{{- $doc := fromYaml $r }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "detector.rules is not a YAML mapping of mode, allow and rules: %s" (get $doc "Error")) }}
{{- end }}
{{- range $k, $_ := $doc }}
{{- if not (has $k (list "mode" "allow" "rules")) }}
{{- fail (printf "detector.rules: unknown key %q (want mode, allow, rules)" $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Components that run the export stage with its sinks: the export Deployment,
and all-in-one (-target=all) when export.enabled. Without export.enabled the
all-in-one pod runs the stage with no sink: it exports nothing.
*/}}
{{- define "logtally.runsExport" -}}
{{- if and .root.Values.export.enabled (has .component (list "export" "allinone")) }}true{{ end }}
{{- end }}

{{/* Components that write the Parquet files (export.parquet.enabled). */}}
{{- define "logtally.writesParquet" -}}
{{- if and (include "logtally.runsExport" .) .root.Values.export.parquet.enabled }}true{{ end }}
{{- end }}

{{/* Mount directory of the Parquet volume (-export.parquet.dir). */}}
{{- define "logtally.parquetDir" -}}/var/lib/logtally/parquet{{- end }}

{{/* Claim of the Parquet volume: export.parquet.persistence.existingClaim or <release>-export-parquet. */}}
{{- define "logtally.parquetClaim" -}}
{{- default (printf "%s-export-parquet" (include "logtally.fullname" .)) .Values.export.parquet.persistence.existingClaim }}
{{- end }}

{{/* Checks of the export values that the schema cannot express. */}}
{{- define "logtally.validateExport" -}}
{{- $v := .Values }}
{{- $e := $v.export }}
{{- if $e.enabled }}
{{- if not (or (include "logtally.exportPostgres.key" .) $e.parquet.enabled) }}
{{- fail "export.enabled needs a sink: export.postgres.existingSecret (or export.postgres.dsn) and/or export.parquet.enabled" }}
{{- end }}
{{- if and $e.parquet.enabled (not $v.allInOne.enabled) (gt (int $e.replicaCount) 1) }}
{{- fail (printf "export.replicaCount (%d) > 1 with export.parquet.enabled: replicas would write the same Parquet files; more than one replica is for PostgreSQL-only setups" (int $e.replicaCount)) }}
{{- end }}
{{- end }}
{{- if and $e.postgres.existingSecret $e.postgres.dsn }}
{{- fail "export.postgres: dsn is for the Secret the chart creates; with existingSecret put it into that Secret (key export.postgres.secretKey)" }}
{{- end }}
{{- $configs := dict "config" $v.config "ingest.config" $v.ingest.config "parser.config" $v.parser.config "aggregator.config" $v.aggregator.config "query.config" $v.query.config "detector.config" $v.detector.config "export.config" $e.config "allInOne.config" $v.allInOne.config }}
{{- range $where, $cfg := $configs }}
{{- $exp := dig "export" dict (default dict $cfg) }}
{{- if hasKey (dig "postgres" dict $exp) "dsn" }}
{{- fail (printf "%s.export.postgres.dsn would put a secret (the DSN's password) into a ConfigMap: use export.postgres (a Secret)" $where) }}
{{- end }}
{{- if hasKey (dig "parquet" dict $exp) "dir" }}
{{- fail (printf "%s.export.parquet.dir is set by the chart: use export.parquet (its volume)" $where) }}
{{- end }}
{{- end }}
{{- end }}
