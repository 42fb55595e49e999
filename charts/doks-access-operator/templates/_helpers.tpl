{{/*
The chart's name, or nameOverride.
*/}}
{{- define "doks-access-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's resources: fullnameOverride, else "<release>-<chart>", or only the
release name when it already contains the chart's name. Kubernetes names are at most 63 characters.
*/}}
{{- define "doks-access-operator.fullname" -}}
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
"<chart>-<version>", for the helm.sh/chart label.
*/}}
{{- define "doks-access-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator's pods: only name and instance, which never change during a
release's life (a Deployment's selector is immutable).
*/}}
{{- define "doks-access-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "doks-access-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every resource the chart creates: the standard ones and commonLabels, as one map, so
that a key given twice appears once (post-renderers and strict YAML parsers refuse duplicate
keys). The chart's own labels win: the selector labels must not change.
*/}}
{{- define "doks-access-operator.labels" -}}
{{- include "doks-access-operator.labelsWith" (list . dict) }}
{{- end }}

{{/*
The labels above and, below them in precedence, the map given second:
`include "doks-access-operator.labelsWith" (list . .Values.podLabels)`.
*/}}
{{- define "doks-access-operator.labelsWith" -}}
{{- $root := index . 0 }}
{{- $own := dict
  "helm.sh/chart" (include "doks-access-operator.chart" $root)
  "app.kubernetes.io/name" (include "doks-access-operator.name" $root)
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/version" $root.Chart.AppVersion
  "app.kubernetes.io/component" "operator"
  "app.kubernetes.io/part-of" "doks-access-operator"
  "app.kubernetes.io/managed-by" $root.Release.Service }}
{{- $extra := index . 1 | default dict }}
{{- toYaml (merge $own $extra ($root.Values.commonLabels | default dict)) }}
{{- end }}

{{/*
Annotations of every resource the chart creates: commonAnnotations, as one map (or nothing when it
is empty, for `with`).
*/}}
{{- define "doks-access-operator.annotations" -}}
{{- include "doks-access-operator.annotationsWith" (list . dict) }}
{{- end }}

{{/*
The annotations above and, above them in precedence, the object's own map given second:
`include "doks-access-operator.annotationsWith" (list . .Values.deploymentAnnotations)`. One map,
so that a key given twice appears once, as with the labels.
*/}}
{{- define "doks-access-operator.annotationsWith" -}}
{{- $root := index . 0 }}
{{- $merged := merge (dict) (index . 1 | default dict) ($root.Values.commonAnnotations | default dict) }}
{{- with $merged }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The image pull Secrets: imagePullSecrets and global.imagePullSecrets, each once.
*/}}
{{- define "doks-access-operator.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat (.Values.imagePullSecrets | default list) (.Values.global.imagePullSecrets | default list) }}
{{- $names = append $names (ternary . (get (kindIs "map" . | ternary . dict) "name") (kindIs "string" .)) }}
{{- end }}
{{- range $name := uniq $names }}
- name: {{ $name }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the operator runs as. One the chart does not create must be named: falling back
to the namespace's "default" ServiceAccount would bind the operator's Secret rights (cluster-wide,
without watchNamespaces) to every pod that runs as it.
*/}}
{{- define "doks-access-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "doks-access-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.create=false needs serviceAccount.name: the chart binds the operator's Secret rights to that ServiceAccount, and must not bind them to the namespace's \"default\" one, which every pod without a ServiceAccount of its own runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: repository@digest when a digest is given, else repository:tag (the tag
defaulting to the chart's appVersion); global.imageRegistry replaces the repository's registry.
*/}}
{{- define "doks-access-operator.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.global.imageRegistry }}
{{- $parts := splitList "/" $repository }}
{{- $first := first $parts }}
{{- /* The first part names a registry when it has a dot or a port, or is localhost (Docker's rule). */}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repository = join "/" (prepend (rest $parts) .) }}
{{- else }}
{{- $repository = printf "%s/%s" . $repository }}
{{- end }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when several replicas run with leader election, else "" (false in a template condition).
*/}}
{{- define "doks-access-operator.leaderElection" -}}
{{- if .Values.highAvailability.enabled }}true{{ end }}
{{- end }}

{{/*
The number of replicas: highAvailability.replicas with high availability, else 1.
*/}}
{{- define "doks-access-operator.replicas" -}}
{{- if .Values.highAvailability.enabled }}{{ .Values.highAvailability.replicas }}{{ else }}1{{ end }}
{{- end }}

{{/*
The Lease the replicas elect their leader with.
*/}}
{{- define "doks-access-operator.leaseName" -}}
{{- default (include "doks-access-operator.fullname" .) .Values.highAvailability.leaseName }}
{{- end }}

{{/*
What the operator does in the namespaces it watches, and nothing more:
- DOClusterAccess objects: Kopf lists and watches them, and patches its finalizer onto each;
  the operator patches their status. For each DOClusterAccessSet it also creates, patches, lists
  and deletes the DOClusterAccess objects the set controls (its children).
- DOClusterAccessSet objects: Kopf lists and watches them; the operator reads one by name and
  patches their status. It changes nothing else of a set (no finalizer: nothing is cleaned up on
  a set's deletion but its children, which the garbage collector deletes through their
  ownerReference, set without blockOwnerDeletion).
- Secrets: the operator reads the token Secret by name and creates, replaces and deletes the
  Secrets it manages. It watches only those, with a label selector, but RBAC cannot limit list
  and watch to a label, so these two verbs cover every Secret the Role or ClusterRole reaches.
- Events: one per state change of a DOClusterAccess or a DOClusterAccessSet, created (never
  updated) by the operator.
*/}}
{{- define "doks-access-operator.rules" -}}
- apiGroups: ["doks-access.dev"]
  resources: ["doclusteraccesses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["doks-access.dev"]
  resources: ["doclusteraccesses/status"]
  verbs: ["patch"]
- apiGroups: ["doks-access.dev"]
  resources: ["doclusteraccesssets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["doks-access.dev"]
  resources: ["doclusteraccesssets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
The metrics Service, and with it the job label Prometheus gives the operator's scrape targets when
a ServiceMonitor finds them.
*/}}
{{- define "doks-access-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "doks-access-operator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
The selector of the operator's scrape targets in Prometheus's up series: prometheusRule.upSelector,
else the job and namespace the chart's ServiceMonitor gives them.
*/}}
{{- define "doks-access-operator.upSelector" -}}
{{- if .Values.prometheusRule.upSelector }}
{{- .Values.prometheusRule.upSelector }}
{{- else }}
{{- printf "job=%q, namespace=%q" (include "doks-access-operator.metricsServiceName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The namespace of the ClusterDOAccounts' token Secrets: accounts.namespace, else the release's.
*/}}
{{- define "doks-access-operator.accountNamespace" -}}
{{- default .Release.Namespace .Values.accounts.namespace }}
{{- end }}
