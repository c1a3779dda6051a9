{{/*
Names and labels shared by the templates.
*/}}

{{/* The chart's name, at most 63 characters. */}}
{{- define "tidings.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the operator's Deployment, ServiceAccount, Roles and Service.
A release called like the chart is not repeated ("tidings", not "tidings-tidings").
*/}}
{{- define "tidings.fullname" -}}
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

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry the release namespace too:
two releases of the same name in different namespaces must not share them.
*/}}
{{- define "tidings.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tidings.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tidings.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's pods: what the Deployment and the metrics Service select. */}}
{{- define "tidings.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidings.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tidings.labels" -}}
helm.sh/chart: {{ include "tidings.chart" . }}
{{ include "tidings.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tidings
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tidings.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidings.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tidings.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list (read back with fromJsonArray):
`watchNamespaces` without duplicates, or the release namespace when it is empty. Empty
when watching all namespaces.
*/}}
{{- define "tidings.watchNamespaces" -}}
{{- if .Values.watchAllNamespaces }}
{{- if .Values.watchNamespaces }}
{{- fail "watchAllNamespaces: true and a watchNamespaces list exclude each other: set one of them" }}
{{- end }}
{{- list | toJson }}
{{- else if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* Whether kopf peering is on: peering objects and permissions on them. */}}
{{- define "tidings.peering" -}}
{{- if not .Values.peering.standalone }}true{{ end }}
{{- end }}

{{/*
What the operator may do in a namespace it watches: a Role's rules there, or the rules
of the ClusterRole bound cluster-wide when it watches every namespace.
*/}}
{{- define "tidings.namespacedRules" -}}
# Its own resources: read, watch and patch (kopf's annotations and finalizers, the
# reconcile's changes); MessageShards are also created from and deleted with a ChatRegion.
- apiGroups: ["tidings.dev"]
  resources: ["chatregions", "pushpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tidings.dev"]
  resources: ["messageshards"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
- apiGroups: ["tidings.dev"]
  resources: ["chatregions/status", "messageshards/status", "pushpools/status"]
  verbs: ["get", "patch", "update"]
# Children carry owner references that block their owner's deletion: the API server asks
# for update on the owner's finalizers to set blockOwnerDeletion.
- apiGroups: ["tidings.dev"]
  resources: ["chatregions/finalizers", "messageshards/finalizers", "pushpools/finalizers"]
  verbs: ["update"]
# The children of a region: server-side apply is patch (and create when the object is
# new), pruning is delete, watching children drives a reconcile.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# configmaps: the platform Role the operator creates grants get/watch on one of them, and
# Kubernetes lets nobody grant what it does not hold.
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Secrets are only read: Cassandra credentials, and digests of referenced Secrets that
# roll the pods when a Secret changes.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Pods are only counted (ready replicas), never touched.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Region heartbeats (renewed by server-side apply) and peers' heartbeats, read for
# failover; they go with their ChatRegion by garbage collection, never deleted here.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
# The global gateway name (spec.dns): one DNSEndpoint per region for ExternalDNS,
# applied as the regions' health changes and deleted when spec.dns goes.
- apiGroups: ["externaldns.k8s.io"]
  resources: ["dnsendpoints"]
  verbs: ["get", "create", "patch", "delete"]
{{- if and (include "tidings.peering" .) (not .Values.watchAllNamespaces) }}
# kopf's peering: heartbeats in the KopfPeering's status.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
