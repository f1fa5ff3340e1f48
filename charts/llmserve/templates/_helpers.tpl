{{/*
Names, labels and the operator's RBAC rules, shared by the templates.
*/}}

{{/* The chart's name: llmserve, or nameOverride. */}}
{{- define "llmserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, the base of every object's name: the release name when it already
holds the chart's name (release `llmserve` gives `llmserve`, not `llmserve-llmserve`).
*/}}
{{- define "llmserve.fullname" -}}
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
Name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding): the full name and the
release namespace, so that two releases of the same name in two namespaces do not collide.
*/}}
{{- define "llmserve.clusterName" -}}
{{- printf "%s-%s" (include "llmserve.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The labels of every object of the chart, but its component. */}}
{{- define "llmserve.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "llmserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels of the operator's objects. */}}
{{- define "llmserve.labels" -}}
{{ include "llmserve.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The labels that select the operator's pods (immutable in the Deployment's selector). */}}
{{- define "llmserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "llmserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmserve.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.create is false: set serviceAccount.name to the existing ServiceAccount to run as" }}
{{- end }}
{{- end }}

{{/* The operator image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "llmserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaces whose LLMServices the operator manages, as a list; empty means every namespace.
Checks the scope's settings on the way (each template that depends on them includes this).
*/}}
{{- define "llmserve.watchedNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.scope is namespaced but rbac.namespaces is empty: list the namespaces whose LLMServices this release manages, or set rbac.scope: cluster" }}
{{- end }}
{{- toJson .Values.rbac.namespaces }}
{{- else }}
{{- if .Values.rbac.namespaces }}
{{- fail (printf "rbac.namespaces is %v but rbac.scope is cluster, which manages every namespace: set rbac.scope: namespaced to limit it, or remove rbac.namespaces" .Values.rbac.namespaces) }}
{{- end }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/*
What the operator does in each namespace it manages; nothing more (see the chart's README for why
each rule is there). The same list goes into the ClusterRole (scope cluster) or each Role
(scope namespaced). Secrets: create only, never read. No ConfigMaps, no wildcards.
*/}}
{{- define "llmserve.operatorRules" -}}
# LLMServices: kopf lists and watches them; the operator writes status and, as the autoscaler,
# spec.replicas through the scale subresource. It never writes the spec.
- apiGroups: [llmserve.io]
  resources: [llmservices]
  verbs: [list, watch]
- apiGroups: [llmserve.io]
  resources: [llmservices/status, llmservices/scale]
  verbs: [patch]
# Children carry an owner reference with blockOwnerDeletion, which clusters running the
# OwnerReferencesPermissionEnforcement admission plugin allow only to who may update this.
- apiGroups: [llmserve.io]
  resources: [llmservices/finalizers]
  verbs: [update]
# The model cache: created once, never changed (a bound claim cannot shrink); watched.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create]
# The download Job: created, read back after a 409, deleted to replace it; watched.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Server-side apply (patch; create when the object is missing); watched.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch]
# The API-keys Secret of an LLMService that names none: created once with a random key. Never
# get, list, watch or update: the operator cannot read any Secret, its own included.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
# Engine pods: watched for the autoscaler, listed to say why replicas are unschedulable.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# The operator's events (and kopf's warnings) about LLMServices, in core/v1.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* kopf's cluster-wide reads: CRDs (to notice the LLMService CRD change) and, when it watches
listed namespaces, the Namespaces (to start on one created later). */}}
{{- define "llmserve.discoveryRules" -}}
# kopf watches CustomResourceDefinitions to notice a changed LLMService CRD (read-only).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if eq .Values.rbac.scope "namespaced" }}
# Watching listed namespaces, kopf lists Namespaces to serve one created after it started.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/* The `helm test` LLMService's namespace: tests.namespace, else one the operator manages. */}}
{{- define "llmserve.testNamespace" -}}
{{- $watched := include "llmserve.watchedNamespaces" . | fromJsonArray }}
{{- if .Values.tests.namespace }}
{{- .Values.tests.namespace }}
{{- else if $watched }}
{{- first $watched }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}
