{{/*
Names. Pod names are FULLNAME-ORDINAL and carry a controller-revision-hash label of
FULLNAME-<10 characters>, so FULLNAME stays within 52 characters.
*/}}
{{- define "licensed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "licensed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "licensed.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service that names every pod, ready or not. */}}
{{- define "licensed.headlessName" -}}
{{- printf "%s-headless" (include "licensed.fullname" .) -}}
{{- end -}}

{{- define "licensed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "licensed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "licensed.labels" -}}
helm.sh/chart: {{ include "licensed.chart" . }}
{{ include "licensed.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: licensed
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "licensed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "licensed.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "licensed.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The DNS name of the pod of ordinal .ordinal (its headless Service entry). */}}
{{- define "licensed.podHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "licensed.fullname" .root) (int .ordinal) (include "licensed.headlessName" .root) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* --peers: node id ORDINAL+1 at its pod's Raft address, for every replica. */}}
{{- define "licensed.peers" -}}
{{- $root := . -}}
{{- $peers := list -}}
{{- range $ordinal := until (int .Values.replicas) -}}
{{- $peers = append $peers (printf "%d=%s:%d" (add $ordinal 1) (include "licensed.podHost" (dict "root" $root "ordinal" $ordinal)) (int $root.Values.containerPorts.raft)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* Secrets and ConfigMaps the pods read. */}}
{{- define "licensed.authSecretName" -}}
{{- default (printf "%s-auth" (include "licensed.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "licensed.poolEnabled" -}}
{{- if or .Values.pool.json .Values.pool.data .Values.pool.existingConfigMap -}}true{{- end -}}
{{- end -}}

{{- define "licensed.poolConfigMapName" -}}
{{- default (printf "%s-pool" (include "licensed.fullname" .)) .Values.pool.existingConfigMap -}}
{{- end -}}

{{/* The pool file's text, as the chart's ConfigMap holds it. */}}
{{- define "licensed.poolText" -}}
{{- if .Values.pool.json -}}
{{- .Values.pool.json -}}
{{- else -}}
{{- toPrettyJson .Values.pool.data -}}
{{- end -}}
{{- end -}}

{{- define "licensed.signingKeyEnabled" -}}
{{- if or .Values.signingKey.pem .Values.signingKey.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "licensed.signingKeySecretName" -}}
{{- default (printf "%s-signing-key" (include "licensed.fullname" .)) .Values.signingKey.existingSecret -}}
{{- end -}}

{{- define "licensed.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "licensed.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "licensed.clientCASecretName" -}}
{{- default (printf "%s-client-ca" (include "licensed.fullname" .)) .Values.tls.clientCA.existingSecret -}}
{{- end -}}

{{- define "licensed.peerTlsSecretName" -}}
{{- default (printf "%s-peer-tls" (include "licensed.fullname" .)) .Values.peerTls.existingSecret -}}
{{- end -}}

{{- define "licensed.apiScheme" -}}
{{- if .Values.tls.enabled -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{- define "licensed.jobName" -}}
{{- default (include "licensed.fullname" .) .Values.metrics.serviceMonitor.jobName -}}
{{- end -}}

{{/*
Checks of values the schema cannot express. Called from the StatefulSet, so every
render runs them.
*/}}
{{- define "licensed.validate" -}}
{{- $replicas := int .Values.replicas -}}
{{- if and .Values.pool.json .Values.pool.data -}}
{{- fail "pool: set pool.json or pool.data, not both" -}}
{{- end -}}
{{- if and .Values.pool.existingConfigMap (or .Values.pool.json .Values.pool.data) -}}
{{- fail "pool: pool.existingConfigMap is set, so pool.json and pool.data must be empty" -}}
{{- end -}}
{{- if .Values.pool.json -}}
{{- $parsed := fromJson .Values.pool.json -}}
{{- if hasKey $parsed "Error" -}}
{{- $list := fromJsonArray .Values.pool.json -}}
{{- if and (eq (len $list) 1) (kindIs "string" (index $list 0)) -}}
{{- fail (printf "pool.json is not JSON: %s" (index $list 0)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.auth.existingSecret (or .Values.auth.adminToken .Values.auth.clusterSecret) -}}
{{- fail "auth: auth.existingSecret is set, so auth.adminToken and auth.clusterSecret must be empty" -}}
{{- end -}}
{{- if and .Values.signingKey.existingSecret .Values.signingKey.pem -}}
{{- fail "signingKey: set signingKey.pem or signingKey.existingSecret, not both" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- if and .Values.tls.existingSecret (or .Values.tls.cert .Values.tls.key) -}}
{{- fail "tls: set tls.existingSecret or tls.cert and tls.key, not both" -}}
{{- end -}}
{{- if and (not .Values.tls.existingSecret) (not (and .Values.tls.cert .Values.tls.key)) -}}
{{- fail "tls.enabled: set tls.existingSecret, or both tls.cert and tls.key" -}}
{{- end -}}
{{- if .Values.tls.clientCA.enabled -}}
{{- if and .Values.tls.clientCA.existingSecret .Values.tls.clientCA.pem -}}
{{- fail "tls.clientCA: set tls.clientCA.existingSecret or tls.clientCA.pem, not both" -}}
{{- end -}}
{{- if not (or .Values.tls.clientCA.existingSecret .Values.tls.clientCA.pem) -}}
{{- fail "tls.clientCA.enabled: set tls.clientCA.existingSecret or tls.clientCA.pem" -}}
{{- end -}}
{{- end -}}
{{- else if .Values.tls.clientCA.enabled -}}
{{- fail "tls.clientCA.enabled needs tls.enabled" -}}
{{- end -}}
{{- if .Values.peerTls.enabled -}}
{{- if and .Values.peerTls.existingSecret (or .Values.peerTls.cert .Values.peerTls.key .Values.peerTls.ca) -}}
{{- fail "peerTls: set peerTls.existingSecret or peerTls.cert, peerTls.key and peerTls.ca, not both" -}}
{{- end -}}
{{- if and (not .Values.peerTls.existingSecret) (not (and .Values.peerTls.cert .Values.peerTls.key .Values.peerTls.ca)) -}}
{{- fail "peerTls.enabled: set peerTls.existingSecret, or all of peerTls.cert, peerTls.key and peerTls.ca" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.pdb.enabled (gt $replicas 1) -}}
{{- $most := div (sub $replicas 1) 2 -}}
{{- if gt (int .Values.pdb.maxUnavailable) (int $most) -}}
{{- fail (printf "pdb.maxUnavailable %d would let drains take the quorum of %d replicas: at most %d" (int .Values.pdb.maxUnavailable) $replicas (int $most)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.prometheusRule.enabled (not (contains "licensed" (include "licensed.jobName" .))) -}}
{{- fail (printf "metrics.prometheusRule: the alerts match scrape jobs whose name contains \"licensed\", but the job is %q: set metrics.serviceMonitor.jobName" (include "licensed.jobName" .)) -}}
{{- end -}}
{{- end -}}
