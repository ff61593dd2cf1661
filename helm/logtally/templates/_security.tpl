{{/*
API tokens and TLS, NATS authentication and TLS (values api.* and nats.auth,
nats.tls). Secrets never go into a ConfigMap: passwords and tokens are
environment variables from Secrets (secretKeyRef), files are Secret volumes
mounted read-only under /etc/logtally-secrets/ with fixed file names, and the
config file points the flags at them.
*/}}

{{/* Mount directory of the Secret volumes of the logtally containers. */}}
{{- define "logtally.secretsDir" -}}/etc/logtally-secrets{{- end }}

{{/* Name of the Secret with the API tokens. */}}
{{- define "logtally.apiAuth.secretName" -}}
{{- default (printf "%s-api-auth" (include "logtally.fullname" .)) .Values.api.auth.existingSecret }}
{{- end }}

{{/* Key of the ingest token in that Secret, or "" when ingest stays open. */}}
{{- define "logtally.apiAuth.ingestKey" -}}
{{- $a := .Values.api.auth }}
{{- if and $a.enabled $a.ingestTokenKey (or $a.existingSecret $a.ingestToken) }}{{ $a.ingestTokenKey }}{{ end }}
{{- end }}

{{/* Key of the query token in that Secret, or "" when queries stay open. */}}
{{- define "logtally.apiAuth.queryKey" -}}
{{- $a := .Values.api.auth }}
{{- if and $a.enabled $a.queryTokenKey (or $a.existingSecret $a.queryToken) }}{{ $a.queryTokenKey }}{{ end }}
{{- end }}

{{/* Name of the Secret with the bouncer API keys (query.decisions). */}}
{{- define "logtally.bouncerKeys.secretName" -}}
{{- default (printf "%s-bouncer-keys" (include "logtally.fullname" .)) .Values.query.decisions.existingSecret }}
{{- end }}

{{/* Key of the bouncer API keys (a comma list) in that Secret, or "" when there are none. */}}
{{- define "logtally.bouncerKeys.key" -}}
{{- $d := .Values.query.decisions }}
{{- if or $d.existingSecret $d.bouncerKeys }}{{ $d.bouncerKeysKey }}{{ end }}
{{- end }}

{{/* Name of the Secret with the detector's webhook URL. */}}
{{- define "logtally.webhook.secretName" -}}
{{- default (printf "%s-detector-webhook" (include "logtally.fullname" .)) .Values.detector.webhook.existingSecret }}
{{- end }}

{{/* Key of the webhook URL in that Secret, or "" without a webhook. */}}
{{- define "logtally.webhook.key" -}}
{{- $w := .Values.detector.webhook }}
{{- if or $w.existingSecret $w.url }}{{ $w.urlKey }}{{ end }}
{{- end }}

{{/* Name of the Secret with the export stage's PostgreSQL DSN. */}}
{{- define "logtally.exportPostgres.secretName" -}}
{{- default (printf "%s-export-postgres" (include "logtally.fullname" .)) .Values.export.postgres.existingSecret }}
{{- end }}

{{/* Key of the DSN in that Secret, or "" without PostgreSQL. */}}
{{- define "logtally.exportPostgres.key" -}}
{{- $p := .Values.export.postgres }}
{{- if or $p.existingSecret $p.dsn }}{{ $p.secretKey }}{{ end }}
{{- end }}

{{/* Name of the Secret with the NATS credentials. */}}
{{- define "logtally.natsAuth.secretName" -}}
{{- default (printf "%s-nats-auth" (include "logtally.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}

{{/* NATS authentication type of the stages: user, token, nkey, creds or "". */}}
{{- define "logtally.natsAuth.type" -}}
{{- if and (not .Values.allInOne.enabled) (ne .Values.nats.auth.type "none") }}{{ .Values.nats.auth.type }}{{ end }}
{{- end }}

{{/* "true" when the stages talk TLS to NATS. */}}
{{- define "logtally.natsTLS" -}}
{{- if and (not .Values.allInOne.enabled) .Values.nats.tls.enabled }}true{{ end }}
{{- end }}

{{/* "true" when the stages present a client certificate to NATS. */}}
{{- define "logtally.natsClientCert" -}}
{{- if and (include "logtally.natsTLS" .) .Values.nats.tls.clientCert.enabled }}true{{ end }}
{{- end }}

{{/* Scheme of the HTTP API: http or https. */}}
{{- define "logtally.apiScheme" -}}
{{- if .Values.api.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* "true" with mutual TLS on the API. */}}
{{- define "logtally.apiMutualTLS" -}}
{{- if and .Values.api.tls.enabled .Values.api.tls.clientCA.enabled }}true{{ end }}
{{- end }}

{{/* Does a component need the query token? (dict "root" $ "component" "x") */}}
{{- define "logtally.needsQueryToken" -}}
{{- if and (include "logtally.apiAuth.queryKey" .root) (or (has .component (list "query" "allinone")) .root.Values.api.auth.protectMetrics) }}true{{ end }}
{{- end }}

{{/*
Settings of the config file owned by the security values, as JSON, merged
over the chart's other settings: (dict "root" $ "component" "ingest").
*/}}
{{- define "logtally.securityConfig" -}}
{{- $v := .root.Values }}
{{- $dir := include "logtally.secretsDir" . }}
{{- $cfg := dict }}
{{- if ne .component "allinone" }}
{{- $nats := dict }}
{{- $type := include "logtally.natsAuth.type" .root }}
{{- if eq $type "user" }}
{{- $_ := set $nats "user" $v.nats.auth.user }}
{{- else if eq $type "nkey" }}
{{- $_ := set $nats "nkey-seed-file" (printf "%s/nats-auth/nkey.seed" $dir) }}
{{- else if eq $type "creds" }}
{{- $_ := set $nats "creds-file" (printf "%s/nats-auth/nats.creds" $dir) }}
{{- end }}
{{- if include "logtally.natsTLS" .root }}
{{- $tls := dict "ca-file" (printf "%s/nats-ca/ca.crt" $dir) }}
{{- if include "logtally.natsClientCert" .root }}
{{- $_ := set $tls "cert-file" (printf "%s/nats-client-tls/tls.crt" $dir) }}
{{- $_ := set $tls "key-file" (printf "%s/nats-client-tls/tls.key" $dir) }}
{{- end }}
{{- $_ := set $nats "tls" $tls }}
{{- end }}
{{- if $nats }}
{{- $_ := set $cfg "nats" $nats }}
{{- end }}
{{- end }}
{{- if and $v.api.auth.protectMetrics (include "logtally.needsQueryToken" .) }}
{{- $_ := set $cfg "auth" (dict "protect-metrics" true) }}
{{- end }}
{{- if $v.api.tls.enabled }}
{{- $tls := dict "cert-file" (printf "%s/api-tls/tls.crt" $dir) "key-file" (printf "%s/api-tls/tls.key" $dir) }}
{{- if include "logtally.apiMutualTLS" .root }}
{{- $_ := set $tls "client-ca-file" (printf "%s/api-client-ca/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $cfg "api" (dict "tls" $tls) }}
{{- end }}
{{- toJson $cfg }}
{{- end }}

{{/* secretKeyRef environment variable: (list NAME secret key) */}}
{{- define "logtally.secretEnv" -}}
{{- toJson (dict "name" (index . 0) "valueFrom" (dict "secretKeyRef" (dict "name" (index . 1) "key" (index . 2)))) }}
{{- end }}

{{/* Environment of a component from the security values, as {"env": [...]}: (dict "root" $ "component" "x") */}}
{{- define "logtally.securityEnv" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $env := list }}
{{- $apiSecret := include "logtally.apiAuth.secretName" $root }}
{{- with include "logtally.apiAuth.ingestKey" $root }}
{{- if has $.component (list "ingest" "allinone") }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_AUTH_INGEST_TOKEN" $apiSecret .) | fromJson) }}
{{- end }}
{{- end }}
{{- if include "logtally.needsQueryToken" . }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_AUTH_QUERY_TOKEN" $apiSecret (include "logtally.apiAuth.queryKey" $root)) | fromJson) }}
{{- end }}
{{- /* -decisions.bouncer-key (a comma list) on the query API, -decisions.webhook-url on the detector */}}
{{- with include "logtally.bouncerKeys.key" $root }}
{{- if has $.component (list "query" "allinone") }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_DECISIONS_BOUNCER_KEY" (include "logtally.bouncerKeys.secretName" $root) .) | fromJson) }}
{{- end }}
{{- end }}
{{- with include "logtally.webhook.key" $root }}
{{- if has $.component (list "detector" "allinone") }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_DECISIONS_WEBHOOK_URL" (include "logtally.webhook.secretName" $root) .) | fromJson) }}
{{- end }}
{{- end }}
{{- /* -export.postgres.dsn (it holds a password) on the export stage */}}
{{- with include "logtally.exportPostgres.key" $root }}
{{- if include "logtally.runsExport" $ }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_EXPORT_POSTGRES_DSN" (include "logtally.exportPostgres.secretName" $root) .) | fromJson) }}
{{- end }}
{{- end }}
{{- if ne .component "allinone" }}
{{- $type := include "logtally.natsAuth.type" $root }}
{{- $natsSecret := include "logtally.natsAuth.secretName" $root }}
{{- if eq $type "user" }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_NATS_PASSWORD" $natsSecret $v.nats.auth.passwordKey) | fromJson) }}
{{- else if eq $type "token" }}
{{- $env = append $env (include "logtally.secretEnv" (list "LOGTALLY_NATS_TOKEN" $natsSecret $v.nats.auth.tokenKey) | fromJson) }}
{{- end }}
{{- end }}
{{- toJson (dict "env" $env) }}
{{- end }}

{{/* Secret volume with the given keys projected to fixed file names: (list name secret (list key path ...)) */}}
{{- define "logtally.secretVolume" -}}
{{- $items := list }}
{{- $kv := index . 2 }}
{{- range $i := until (div (len $kv) 2 | int) }}
{{- $items = append $items (dict "key" (index $kv (mul $i 2)) "path" (index $kv (add (mul $i 2) 1))) }}
{{- end }}
{{- /* 0440: the pods' fsGroup reads them */}}
{{- toJson (dict "name" (index . 0) "secret" (dict "secretName" (index . 1) "defaultMode" 288 "items" $items)) }}
{{- end }}

{{/*
Secret volumes of a logtally component as {"volumes": [...], "mounts": [...]}:
(dict "root" $ "component" "x"). Mounted at /etc/logtally-secrets/<volume name>.
*/}}
{{- define "logtally.securityVolumes" -}}
{{- $v := .root.Values }}
{{- $vols := list }}
{{- if $v.api.tls.enabled }}
{{- $t := $v.api.tls }}
{{- $vols = append $vols (list "api-tls" $t.secretName (list $t.certKey "tls.crt" $t.keyKey "tls.key")) }}
{{- if $t.clientCA.enabled }}
{{- $vols = append $vols (list "api-client-ca" (default $t.secretName $t.clientCA.secretName) (list $t.clientCA.key "ca.crt")) }}
{{- end }}
{{- end }}
{{- if ne .component "allinone" }}
{{- $a := $v.nats.auth }}
{{- $type := include "logtally.natsAuth.type" .root }}
{{- if eq $type "nkey" }}
{{- $vols = append $vols (list "nats-auth" (include "logtally.natsAuth.secretName" .root) (list $a.nkeySeedKey "nkey.seed")) }}
{{- else if eq $type "creds" }}
{{- $vols = append $vols (list "nats-auth" (include "logtally.natsAuth.secretName" .root) (list $a.credsKey "nats.creds")) }}
{{- end }}
{{- if include "logtally.natsTLS" .root }}
{{- $t := $v.nats.tls }}
{{- $vols = append $vols (list "nats-ca" $t.secretName (list $t.caKey "ca.crt")) }}
{{- if $t.clientCert.enabled }}
{{- $vols = append $vols (list "nats-client-tls" $t.clientCert.secretName (list $t.clientCert.certKey "tls.crt" $t.clientCert.keyKey "tls.key")) }}
{{- end }}
{{- end }}
{{- end }}
{{- $volumes := list }}
{{- $mounts := list }}
{{- $dir := include "logtally.secretsDir" . }}
{{- range $vols }}
{{- $volumes = append $volumes (include "logtally.secretVolume" . | fromJson) }}
{{- $mounts = append $mounts (dict "name" (index . 0) "mountPath" (printf "%s/%s" $dir (index . 0)) "readOnly" true) }}
{{- end }}
{{- toJson (dict "volumes" $volumes "mounts" $mounts) }}
{{- end }}

{{/*
Probe handler of the logtally containers: (dict "root" $ "path" "/readyz").
HTTPS with api.tls; with mutual TLS the kubelet, which presents no client
certificate, cannot complete the handshake: a TCP check of the port then.
*/}}
{{- define "logtally.probeHandler" -}}
{{- if include "logtally.apiMutualTLS" .root }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: {{ .path }}
  port: http
  {{- if .root.Values.api.tls.enabled }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}

{{/*
Checksum of the Secrets the chart creates ("" when it creates none), so that
pods roll when a token or password changes: (dict "root" $ "files" (list "api-auth-secret.yaml" ...)).
*/}}
{{- define "logtally.secretsChecksum" -}}
{{- $root := .root }}
{{- $s := "" }}
{{- range .files }}
{{- $s = print $s (include (print $root.Template.BasePath "/" .) $root | trim) }}
{{- end }}
{{- if $s }}{{ $s | sha256sum }}{{ end }}
{{- end }}

{{/* Checks of the security values that the schema cannot express. */}}
{{- define "logtally.validateSecurity" -}}
{{- $v := .Values }}
{{- $a := $v.api.auth }}
{{- if and $a.enabled (not $a.existingSecret) (not $a.ingestToken) (not $a.queryToken) }}
{{- fail "api.auth.enabled needs api.auth.existingSecret or at least one of api.auth.ingestToken and api.auth.queryToken" }}
{{- end }}
{{- if and $a.enabled $a.existingSecret (not $a.ingestTokenKey) (not $a.queryTokenKey) }}
{{- fail "api.auth.existingSecret needs at least one of api.auth.ingestTokenKey and api.auth.queryTokenKey" }}
{{- end }}
{{- if and $a.enabled (not $a.existingSecret) (or (and $a.ingestToken (not $a.ingestTokenKey)) (and $a.queryToken (not $a.queryTokenKey))) }}
{{- fail "api.auth: a token needs its key (api.auth.ingestTokenKey, api.auth.queryTokenKey)" }}
{{- end }}
{{- if and $a.protectMetrics (not (include "logtally.apiAuth.queryKey" .)) }}
{{- fail "api.auth.protectMetrics needs api.auth.enabled and a query token (api.auth.queryToken, or api.auth.queryTokenKey with api.auth.existingSecret)" }}
{{- end }}
{{- $t := $v.api.tls }}
{{- if and $t.enabled (not $t.secretName) }}
{{- fail "api.tls.enabled needs api.tls.secretName (a Secret with the certificate and key)" }}
{{- end }}
{{- if and $t.clientCA.enabled (not $t.enabled) }}
{{- fail "api.tls.clientCA.enabled needs api.tls.enabled" }}
{{- end }}
{{- $na := $v.nats.auth }}
{{- $nt := $v.nats.tls }}
{{- if and $v.allInOne.enabled (or (ne $na.type "none") $nt.enabled) }}
{{- fail "nats.auth and nats.tls do not apply to allInOne: the embedded NATS server listens on no port" }}
{{- end }}
{{- if not $na.existingSecret }}
{{- $need := dict "user" "password" "token" "token" "nkey" "nkeySeed" "creds" "creds" }}
{{- with get $need $na.type }}
{{- if not (get $na .) }}
{{- fail (printf "nats.auth.type=%s needs nats.auth.existingSecret or nats.auth.%s" $na.type .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq $na.type "user") (not $na.user) }}
{{- fail "nats.auth.type=user needs nats.auth.user" }}
{{- end }}
{{- if include "logtally.natsInternal" . }}
{{- if eq $na.type "creds" }}
{{- fail "nats.auth.type=creds (JWT, operator mode) needs nats.external.url: the chart's NATS has no operator configuration" }}
{{- end }}
{{- if and (eq $na.type "nkey") (not $na.nkeyPublicKey) }}
{{- fail "nats.auth.type=nkey needs nats.auth.nkeyPublicKey (U...) for the chart's NATS" }}
{{- end }}
{{- end }}
{{- if and $nt.enabled (not $nt.secretName) }}
{{- fail "nats.tls.enabled needs nats.tls.secretName (a Secret with the CA and, for the chart's NATS, the server certificate)" }}
{{- end }}
{{- if and $nt.clientCert.enabled (not $nt.enabled) }}
{{- fail "nats.tls.clientCert.enabled needs nats.tls.enabled" }}
{{- end }}
{{- if and $nt.clientCert.enabled (not $nt.clientCert.secretName) }}
{{- fail "nats.tls.clientCert.enabled needs nats.tls.clientCert.secretName" }}
{{- end }}
{{- /* Secrets in `config` would land in a ConfigMap. */}}
{{- $configs := dict "config" $v.config "ingest.config" $v.ingest.config "parser.config" $v.parser.config "aggregator.config" $v.aggregator.config "query.config" $v.query.config "detector.config" $v.detector.config "allInOne.config" $v.allInOne.config }}
{{- range $where, $cfg := $configs }}
{{- range $path := list (list "auth" "ingest-token") (list "auth" "query-token") (list "nats" "password") (list "nats" "token") (list "decisions" "bouncer-key") (list "decisions" "webhook-url") }}
{{- if hasKey (dig (index $path 0) dict (default dict $cfg)) (index $path 1) }}
{{- fail (printf "%s.%s.%s would put a secret into a ConfigMap: use api.auth, nats.auth, query.decisions or detector.webhook (Secrets)" $where (index $path 0) (index $path 1)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $d := $v.query.decisions }}
{{- if and $d.existingSecret $d.bouncerKeys }}
{{- fail "query.decisions: bouncerKeys are for the Secret the chart creates; with existingSecret put them into that Secret (key query.decisions.bouncerKeysKey, a comma list)" }}
{{- end }}
{{- $w := $v.detector.webhook }}
{{- if and $w.existingSecret $w.url }}
{{- fail "detector.webhook: url is for the Secret the chart creates; with existingSecret put it into that Secret (key detector.webhook.urlKey)" }}
{{- end }}
{{- end }}
