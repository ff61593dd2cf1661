{{/*
Shared pieces of the logtally workloads. Each component folder calls them
with (dict "root" $ "component" "ingest" "values" .Values.ingest "ports" (list ...)).
*/}}

{{/* Container ports of a component, as (list (dict "name" "http" "port" 8080 "protocol" "TCP")). */}}
{{- define "logtally.ports" -}}
{{- $p := .Values.ports }}
{{- $http := dict "name" "http" "port" (int $p.http) "protocol" "TCP" }}
{{- $grpc := dict "name" "grpc" "port" (int $p.grpc) "protocol" "TCP" }}
{{- $tcp := dict "name" "tcp" "port" (int $p.tcp) "protocol" "TCP" }}
{{- $syslogTcp := dict "name" "syslog-tcp" "port" (int $p.syslog) "protocol" "TCP" }}
{{- $syslogUdp := dict "name" "syslog-udp" "port" (int $p.syslog) "protocol" "UDP" }}
{{- $all := dict
      "ingest" (list $http $tcp $syslogTcp $syslogUdp)
      "parser" (list $http)
      "aggregator" (list $http)
      "query" (list $http $grpc)
      "detector" (list $http)
      "export" (list $http)
      "allinone" (list $http $grpc $tcp $syslogTcp $syslogUdp) }}
{{- toJson (dict "ports" $all) }}
{{- end }}

{{- define "logtally.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
data:
  config.yaml: |
    {{- include "logtally.config" . | nindent 4 }}
{{- end }}

{{/* Pod template of a logtally workload. */}}
{{- define "logtally.podTemplate" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $ports := get (include "logtally.ports" $root | fromJson).ports .component }}
{{- $sec := include "logtally.securityVolumes" . | fromJson }}
metadata:
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "logtally.config" . | sha256sum }}
    {{- /* Secrets the chart creates that this pod reads; the rules ConfigMap is
           not here: the binary reloads it without a restart */}}
    {{- $secretFiles := list "api-auth-secret.yaml" "nats-auth-secret.yaml" }}
    {{- if has .component (list "query" "allinone") }}{{ $secretFiles = append $secretFiles "bouncer-keys-secret.yaml" }}{{ end }}
    {{- if has .component (list "detector" "allinone") }}{{ $secretFiles = append $secretFiles "detector-webhook-secret.yaml" }}{{ end }}
    {{- if has .component (list "export" "allinone") }}{{ $secretFiles = append $secretFiles "export-postgres-secret.yaml" }}{{ end }}
    {{- with include "logtally.secretsChecksum" (dict "root" $root "files" $secretFiles) }}
    checksum/secrets: {{ . }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "logtally.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ add $root.Values.shutdownTimeoutSeconds $root.Values.terminationGraceExtraSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with (include "logtally.affinity" . | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: logtally
      image: {{ include "logtally.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - -target={{ ternary "all" .component (eq .component "allinone") }}
        - -config.file=/etc/logtally/config.yaml
        {{- if eq .component "allinone" }}
        {{- /* the embedded server's file store sync (nats.sync) */}}
        - -nats.sync={{ $root.Values.nats.sync }}
        {{- if ne $root.Values.nats.sync "always" }}
        - -nats.sync-interval={{ $root.Values.nats.syncInterval }}
        {{- end }}
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- /* secretKeyRef variables first: env and <stage>.env may override them */}}
      {{- $env := concat (include "logtally.securityEnv" . | fromJson).env (default list $root.Values.env) (default list $v.env) }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $ports }}
        - name: {{ .name }}
          containerPort: {{ .port }}
          protocol: {{ .protocol }}
        {{- end }}
      readinessProbe:
        {{- include "logtally.probeHandler" (dict "root" $root "path" "/readyz") | trim | nindent 8 }}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      livenessProbe:
        {{- include "logtally.probeHandler" (dict "root" $root "path" "/healthz") | trim | nindent 8 }}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/logtally
          readOnly: true
        {{- if eq .component "allinone" }}
        - name: data
          mountPath: /data
        {{- end }}
        {{- if include "logtally.writesParquet" . }}
        - name: parquet
          mountPath: {{ include "logtally.parquetDir" . }}
        {{- end }}
        {{- if include "logtally.readsRules" . }}
        {{- /* the directory, never a subPath: a subPath mount gets no updates */}}
        - name: rules
          mountPath: {{ include "logtally.rulesDir" . }}
          readOnly: true
        {{- end }}
        {{- with $sec.mounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "logtally.fullname" $root }}-{{ .component }}
    {{- if eq .component "allinone" }}
    - name: data
      {{- if $v.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-data" (include "logtally.fullname" $root)) $v.persistence.existingClaim }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
    {{- if include "logtally.writesParquet" . }}
    {{- $pp := $root.Values.export.parquet.persistence }}
    - name: parquet
      {{- if $pp.enabled }}
      persistentVolumeClaim:
        claimName: {{ include "logtally.parquetClaim" $root }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
    {{- if include "logtally.readsRules" . }}
    - name: rules
      configMap:
        name: {{ include "logtally.fullname" $root }}-rules
    {{- end }}
    {{- with $sec.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Deployment of a stage. */}}
{{- define "logtally.deployment" -}}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
spec:
  {{- if eq .component "allinone" }}
  replicas: 1
  strategy:
    type: Recreate
  {{- else if include "logtally.writesParquet" . }}
  {{- /* one writer of the Parquet files, and a ReadWriteOnce claim: the old
         pod ends before the new one starts */}}
  replicas: 1
  strategy:
    type: Recreate
  {{- else }}
  {{- if not (or (dig "autoscaling" "enabled" false $v) (dig "keda" "enabled" false $v)) }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "logtally.selectorLabels" . | nindent 6 }}
  template:
    {{- include "logtally.podTemplate" . | trim | nindent 4 }}
{{- end }}

{{- define "logtally.pdb" -}}
{{- if .values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
spec:
  {{- if hasKey .values.pdb "minAvailable" }}
  minAvailable: {{ .values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "logtally.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "logtally.hpa" -}}
{{- $a := .values.autoscaling }}
{{- if and $a.enabled (not (dig "keda" "enabled" false .values)) }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "logtally.fullname" .root }}-{{ .component }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* ClusterIP Service with the HTTP port only (parser, aggregator: metrics). */}}
{{- define "logtally.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "logtally.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.ports.http }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "logtally.serviceMonitor" -}}
{{- $sm := .root.Values.serviceMonitor }}
{{- if $sm.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "logtally.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "logtally.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "logtally.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: {{ default "http" .port }}
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
      {{- $v := .root.Values }}
      {{- if ne .component "nats" }}
      {{- if $v.api.tls.enabled }}
      scheme: https
      {{- $svc := ternary (include "logtally.fullname" .root) (printf "%s-%s" (include "logtally.fullname" .root) .component) (eq .component "allinone") }}
      {{- $tls := dict "serverName" (printf "%s.%s.svc" $svc .root.Release.Namespace) }}
      {{- if $v.api.tls.caKey }}
      {{- $_ := set $tls "ca" (dict "secret" (dict "name" $v.api.tls.secretName "key" $v.api.tls.caKey)) }}
      {{- else }}
      {{- $_ := set $tls "insecureSkipVerify" true }}
      {{- end }}
      tlsConfig:
        {{- mergeOverwrite $tls (deepCopy (default dict $sm.tlsConfig)) | toYaml | nindent 8 }}
      {{- end }}
      {{- if $v.api.auth.protectMetrics }}
      authorization:
        type: Bearer
        credentials:
          name: {{ include "logtally.apiAuth.secretName" .root }}
          key: {{ include "logtally.apiAuth.queryKey" .root }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end }}
