{{/*
The operator's alerting rules: one Prometheus rule group, in the format of a Prometheus rules file
(the PrometheusRule's spec.groups). Thresholds come from prometheusRule.*.

Per-object series are aggregated by (namespace, name, cluster_id), so that they hold whichever
replica or scrape target reports them. An expiration timestamp of 0 means "no credential yet" and
is ignored. Prometheus's own templates ({{ $labels.x }}) are written inside Go raw strings, so that
Helm leaves them alone.
*/}}
{{- define "doks-access-operator.alertGroups" -}}
{{- $object := `{{ $labels.namespace }}/{{ $labels.name }}` }}
{{- $expiring := .Values.prometheusRule.expiringWithinSeconds | int64 }}
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
        summary: {{ printf "The kubeconfig of DOClusterAccess %s expires soon and its renewals fail." $object | quote }}
        description: {{ printf "The credential in the Secret of DOClusterAccess %s (cluster %s) expires in %s and the operator's last renewals failed. Find the reason in the object's Ready and Reconciling conditions (kubectl -n %s describe doclusteraccess %s): for Unauthorized, replace the DigitalOcean API token in its token Secret; for ClusterNotFound, fix spec.clusterID or spec.clusterName; for RateLimited, Server or Transport, check the DigitalOcean API's status and the operator's egress. Consumers of the Secret lose access when the credential expires." $object `{{ $labels.cluster_id }}` `{{ $value | humanizeDuration }}` `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessCredentialExpired
      expr: |-
        max by (namespace, name, cluster_id) (doks_access_credential_expiration_timestamp_seconds > 0)
          < time()
      labels:
        severity: critical{{ $alertLabels }}
      annotations:
        summary: {{ printf "The kubeconfig of DOClusterAccess %s has expired." $object | quote }}
        description: {{ printf "The credential in the Secret of DOClusterAccess %s (cluster %s) has expired, so everything that uses this Secret is locked out of the cluster. Find out why it was not renewed from the object's conditions (kubectl -n %s describe doclusteraccess %s) and the operator's logs, fix the cause (usually the DigitalOcean API token in its token Secret), and the operator fetches a new credential on its next attempt." $object `{{ $labels.cluster_id }}` `{{ $labels.namespace }}` `{{ $labels.name }}` | quote }}
    - alert: DOKSAccessDigitalOceanErrors
      expr: |-
        sum by (endpoint) (rate(doks_access_digitalocean_requests_total{code=~"5..|429"}[15m]))
          / sum by (endpoint) (rate(doks_access_digitalocean_requests_total[15m]))
          > {{ .Values.prometheusRule.digitalOceanErrorRatio }}
      for: 15m
      labels:
        severity: warning{{ $alertLabels }}
      annotations:
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
        summary: The doks-access-operator is down or Prometheus cannot scrape it.
        description: {{ printf "No scrape target of the doks-access-operator (up{%s}) has been up for 5 minutes, so no kubeconfig is renewed and the other alerts are blind. Check its pods (kubectl -n %s get pods -l app.kubernetes.io/instance=%s) and their logs, and that Prometheus discovers the Service %s." (include "doks-access-operator.upSelector" .) .Release.Namespace .Release.Name (include "doks-access-operator.metricsServiceName" .) | quote }}
{{- end }}
