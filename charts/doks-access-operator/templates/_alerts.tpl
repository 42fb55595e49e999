{{/*
The operator's alerting rules: one Prometheus rule group, in the format of a Prometheus rules file
(the PrometheusRule's spec.groups). Thresholds come from prometheusRule.*.

Per-object series are aggregated by (namespace, name, cluster_id), per-set series by (namespace,
name), so that they hold whichever replica or scrape target reports them. An expiration timestamp of 0 means "no credential yet" and
is ignored. Prometheus's own templates ({{ $labels.x }}) are written inside Go raw strings, so that
Helm leaves them alone.
*/}}
{{- define "doks-access-operator.alertGroups" -}}
{{- $object := `{{ $labels.namespace }}/{{ $labels.name }}` }}
{{- $set := $object }}
{{- $expiring := .Values.prometheusRule.expiringWithinSeconds | int64 }}
{{- /* Each alert's runbook is the section of docs/runbooks.md named after it: its anchor is the
alert's name in lower case. */}}
{{- $runbooks := trimSuffix "/" .Values.prometheusRule.runbookBaseURL }}
{{- if hasKey .Values.prometheusRule.alertLabels "severity" }}
{{- fail "prometheusRule.alertLabels cannot set severity: each alert sets its own (warning or critical), and a label given twice makes the rule invalid YAML for strict parsers" }}
{{- end }}
{{- $alertLabels := "" }}
{{- with .Values.prometheusRule.alertLabels }}{{ $alertLabels = toYaml . | nindent 8 }}{{ end -}}
- name: doks-access-operator
  rules:
    - alert: DOKSAccessCredentialExpiringWhileRenewalsFail
      expr: |-
        (
          max by (namespace, name, cluster_id) (doks_access_credential_expiration_timestamp_seconds > 0)
            - time() < {{ $expiring }}
        )
        and on (namespace, name, cluster_id)
        (
          max by (namespace, name, cluster_id) (doks_access_consecutive_failures) > 0
        )
      for: 10m
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessCredentialExpiringWhileRenewalsFail") | quote }}
        summary: {{ printf "The kubeconfig of DOClusterAccess %s expires soon and its renewals fail." $object | quote }}
        description: {{ printf "The credential in the Secret of DOClusterAccess %s (cluster %s) expires in %s and the operator's last renewals failed. Find the reason in the object's Ready and Reconciling conditions (kubectl -n %s describe doclusteraccess %s): for Unauthorized, replace the DigitalOcean API token in its token Secret; for ClusterNotFound, fix spec.clusterID or spec.clusterName; for RateLimited, Server or Transport, check the DigitalOcean API's status and the operator's egress. Consumers of the Secret lose access when the credential expires." $object `{{ $labels.cluster_id }}` `{{ $value | humanizeDuration }}` `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessCredentialExpired
      expr: |-
        max by (namespace, name, cluster_id) (doks_access_credential_expiration_timestamp_seconds > 0)
          < time()
      labels:
        severity: critical{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessCredentialExpired") | quote }}
        summary: {{ printf "The kubeconfig of DOClusterAccess %s has expired." $object | quote }}
        description: {{ printf "The credential in the Secret of DOClusterAccess %s (cluster %s) has expired, so everything that uses this Secret is locked out of the cluster. Find out why it was not renewed from the object's conditions (kubectl -n %s describe doclusteraccess %s) and the operator's logs, fix the cause (usually the DigitalOcean API token in its token Secret), and the operator fetches a new credential on its next attempt." $object `{{ $labels.cluster_id }}` `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessSetStalled
      expr: |-
        max by (namespace, name) (doks_access_set_stalled) == 1
      for: 15m
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessSetStalled") | quote }}
        summary: {{ printf "DOClusterAccessSet %s is stalled on a problem that needs a human." $set | quote }}
        description: {{ printf "DOClusterAccessSet %s has been Stalled for 15 minutes: the operator cannot fix what is wrong by retrying, so clusters that match its selector may get no credential and deleted ones may keep theirs. Its Stalled condition says why (kubectl -n %s describe doclusteraccessset %s): for InvalidSpec, fix the spec; for TokenSecretMissing, create the token Secret; for Unauthorized, replace the DigitalOcean API token; for TagsNotVisible, give the token tag:read; for Collision or InvalidTemplate, change spec.template so that each cluster renders a valid child with a target Secret name of its own (for example with $(cluster.name))." $set `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessSetNotReady
      # Matched clusters that are neither Ready, nor pending (not running yet in DigitalOcean), nor
      # refused (which DOKSAccessSetStalled reports): children that do not become Ready.
      expr: |-
        max by (namespace, name) (doks_access_set_clusters{state="matched"})
          - max by (namespace, name) (doks_access_set_clusters{state="ready"})
          - max by (namespace, name) (doks_access_set_clusters{state="pending"})
          - max by (namespace, name) (doks_access_set_clusters{state="refused"})
          > 0
      for: 30m
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessSetNotReady") | quote }}
        summary: {{ printf "DOClusterAccessSet %s has had children that are not Ready for 30 minutes." $set | quote }}
        description: {{ printf "%s of the children (DOClusterAccess objects) of DOClusterAccessSet %s are not Ready, and the set has had children that are not Ready for 30 minutes, so their Secrets may hold no working kubeconfig. The set's status lists them first (kubectl -n %s get doclusteraccessset %s -o yaml); check each child's conditions (kubectl -n %s get doclusteraccess -l doks-access.dev/set=%s) and the operator's logs: usually the DigitalOcean API token in the token Secret lacks kubernetes:access_cluster, or the API fails." `{{ $value | humanize }}` $set `{{ $labels.namespace }}` `{{ $labels.name }}` `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessCredentialRejected
      expr: |-
        sum by (job, namespace) (increase(doks_access_guard_checks_total{result="rejected"}[1h])) > 0
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessCredentialRejected") | quote }}
        summary: A cluster refused a kubeconfig the operator still counted as valid.
        description: {{ printf "The lifetime guard (spec.verify) found %s credential(s) in the last hour that their cluster no longer accepted before their computed expiry, and fetched new ones at once; consumers got 401s until then. Either DigitalOcean issued a shorter lifetime than spec.expirySeconds asked for (lower expirySeconds), or a token was revoked. The objects' events say which (kubectl get events -A --field-selector reason=CredentialRejected)." `{{ $value | humanize }}` | quote }}
    - alert: DOKSAccessDigitalOceanErrors
      expr: |-
        sum by (endpoint) (rate(doks_access_digitalocean_requests_total{code=~"5..|429"}[15m]))
          / sum by (endpoint) (rate(doks_access_digitalocean_requests_total[15m]))
          > {{ .Values.prometheusRule.digitalOceanErrorRatio }}
      for: 15m
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessDigitalOceanErrors") | quote }}
        summary: {{ `The DigitalOcean API keeps answering the operator's {{ $labels.endpoint }} requests with errors.` | quote }}
        description: {{ printf "%s of the operator's DigitalOcean API %s requests in the last 15 minutes got a 5xx or 429 answer, for 15 minutes now. For 5xx, check https://status.digitalocean.com; the operator retries with backoff. For 429, another client shares the operator's API token, or the operator's own limits (digitalocean.rateLimits) are above DigitalOcean's: give the operator a token of its own or lower the limits. Credentials keep working until they expire; watch DOKSAccessCredentialExpiringWhileRenewalsFail." `{{ $value | humanizePercentage }}` `{{ $labels.endpoint }}` | quote }}
    - alert: DOKSAccessOperatorDown
      # absent() keeps the selector's labels only when its argument is a plain selector, hence two
      # halves: every target down, or no target at all.
      expr: |-
        max by (job, namespace) (up{ {{- include "doks-access-operator.upSelector" . -}} }) == 0
          or absent(up{ {{- include "doks-access-operator.upSelector" . -}} })
      for: 5m
      labels:
        severity: critical{{ $alertLabels }}
      annotations:
        runbook_url: {{ printf "%s#%s" $runbooks (lower "DOKSAccessOperatorDown") | quote }}
        summary: The doks-access-operator is down or Prometheus cannot scrape it.
        description: {{ printf "No scrape target of the doks-access-operator (up{%s}) has been up for 5 minutes, so no kubeconfig is renewed and the other alerts are blind. Check its pods (kubectl -n %s get pods -l app.kubernetes.io/instance=%s) and their logs, and that Prometheus discovers the Service %s." (include "doks-access-operator.upSelector" .) .Release.Namespace .Release.Name (include "doks-access-operator.metricsServiceName" .) | quote }}
{{- end }}
