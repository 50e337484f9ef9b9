{{/* Chart name, overridable; 63 characters at most (DNS label). */}}
{{- define "secretstage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or just the release name when it already contains the chart name. */}}
{{- define "secretstage.fullname" -}}
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

{{/* name-version for the helm.sh/chart label. */}}
{{- define "secretstage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never add a version here. */}}
{{- define "secretstage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secretstage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels on every object. */}}
{{- define "secretstage.labels" -}}
helm.sh/chart: {{ include "secretstage.chart" . }}
{{ include "secretstage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secretstage-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "secretstage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secretstage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image:tag, or image@digest when a digest is set. */}}
{{- define "secretstage.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* What the operator needs to serve promotions: read them, write their status, post Events. */}}
{{- define "secretstage.promotionRules" -}}
- apiGroups: ["secretstage.io"]
  resources: ["secretstagepromotions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secretstage.io"]
  resources: ["secretstagepromotions/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
What the operator does with a tenant's own objects: read its credentials Secret, a ServiceAccount's role
annotation and an STS token of it, patch its afterSuccess targets. With rbac.tenantAccess=optIn these live
in the unbound ClusterRole <fullname>-tenant that a namespace's admins bind to the operator.
*/}}
{{- define "secretstage.tenantRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- if .Values.serviceAccountIdentity.oidcProviderArn }}
# spec.credentials.serviceAccountRef: read the ServiceAccount's role annotation, then a short-lived token of it
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- if .Values.afterSuccess.restartWorkloads }}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["patch"]
{{- end }}
{{- if .Values.afterSuccess.refreshExternalSecrets }}
- apiGroups: ["external-secrets.io"]
  resources: ["externalsecrets"]
  verbs: ["patch"]
{{- end }}
{{- if .Values.gate.enabled }}
# spec.gate: read the consumers' rollout and pods (and a failed smoke Job's log), run the smoke Jobs
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create"]
# spec.gate.analysis: read the AnalysisTemplates, create and follow the AnalysisRun (Argo Rollouts)
- apiGroups: ["argoproj.io"]
  resources: ["analysistemplates"]
  verbs: ["get"]
- apiGroups: ["argoproj.io"]
  resources: ["analysisruns"]
  verbs: ["get", "create"]
# spec.canary: the canary promotion, owned by the one that asks for it
- apiGroups: ["secretstage.io"]
  resources: ["secretstagepromotions"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/* The rules of the chart's own Role/ClusterRole in the watched namespaces. */}}
{{- define "secretstage.watchRules" -}}
{{ include "secretstage.promotionRules" . }}
{{- if eq .Values.rbac.tenantAccess "cluster" }}
{{ include "secretstage.tenantRules" . }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount as a user name, what admission sees. */}}
{{- define "secretstage.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "secretstage.serviceAccountName" . }}
{{- end }}

{{/*
"release/namespace" of the Helm release that owns the CRD named by the second argument, when that is not
this release, or the CRD exists without Helm ownership (applied by hand); empty otherwise. lookup asks the
cluster, so `helm template` and Argo CD (which render without one) always render the CRD.
*/}}
{{- define "secretstage.crdOwnedElsewhere" -}}
{{- $ := index . 0 }}
{{- $existing := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" (index . 1) }}
{{- if $existing }}
{{- $annotations := default (dict) $existing.metadata.annotations }}
{{- $release := get $annotations "meta.helm.sh/release-name" }}
{{- $namespace := get $annotations "meta.helm.sh/release-namespace" }}
{{- if not (and (eq $release $.Release.Name) (eq $namespace $.Release.Namespace)) }}
{{- if $release }}{{ printf "release %s in namespace %s" $release $namespace }}{{ else }}{{ "no Helm release (applied by hand)" }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse an operator.endpointAllow pattern with a bare "." (it matches any character: kms.cn-hangzhou.aliyuncs.com
would admit kms.cn-hangzhouxaliyuncs.com). `helm --set` drops single backslashes, so it is nearly always a lost
one. The operator refuses it too (domain/policy.py: allow_pattern_problem, the same expression).
*/}}
{{- define "secretstage.checkEndpointAllow" -}}
{{- range .Values.operator.endpointAllow }}
{{- if not (regexMatch `^(?:[^\\.\[]|\\.|\.[*+?{]|\[[^\]]*\])*$` .) }}
{{- fail (printf "operator.endpointAllow: %q has an unescaped '.', which matches any character (kms.cn-hangzhou.aliyuncs.com would also admit kms.cn-hangzhouxaliyuncs.com); write it as \\. — helm --set drops single backslashes, so give the list in a values file in single quotes, or with --set-json" .) }}
{{- end }}
{{- end }}
{{- end }}
