#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager), kubectl and helm
# from the pinned wrapper modules next to this script, into a versioned cache outside the repository.
# A cached set is reused when every binary reports the pinned version; otherwise it is rebuilt.
#
# Prints the directory holding the binaries on its last line of stdout.
# Environment: DOKS_ACCESS_CACHE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/doks-access-operator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
HELM_VERSION=v3.22.0

# The cache key changes whenever a pin, a go.sum or this script changes.
key_input="$(cat "$here/build.sh" "$here"/*/go.mod "$here"/*/go.sum)"
key="$(printf '%s' "$key_input" | sha256sum | cut -c1-12)"
cache_root="${DOKS_ACCESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/doks-access-operator}"
bin_dir="$cache_root/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-$key"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly

log() { printf '[controlplane] %s\n' "$*" >&2; }

reports_version() {  # binary, expected substring
  local flag=--version
  case "${1##*/}" in
    kubectl) flag="version --client --output=json" ;;
    helm) flag="version" ;;
  esac
  local output
  # Read all the output before matching: with pipefail, `grep -q` stopping early would kill the
  # writer with SIGPIPE and make a good binary look wrong.
  # shellcheck disable=SC2086 # the flags are split on purpose
  [ -x "$1" ] && output="$("$1" $flag 2>/dev/null)" && grep -qF -- "$2" <<<"$output"
}

build_date="2026-01-01T00:00:00Z"  # fixed so that builds are reproducible

kube_ldflags() {
  local major minor flags="" pkg
  major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  printf '%s' "-s -w$flags"
}

helm_ldflags() {
  local kmajor kminor
  kmajor="${KUBERNETES_VERSION#v}"; kmajor="${kmajor%%.*}"
  kminor="${KUBERNETES_VERSION#v*.}"; kminor="${kminor%%.*}"
  printf '%s' "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/internal/version.gitTreeState=clean \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
}

build() {  # module dir, package, output name, ldflags
  local out="$bin_dir/$3" start=$SECONDS
  log "building $3 from $2"
  (cd "$here/$1" && go build -trimpath -ldflags "$4" -o "$out.tmp" "$2")
  mv "$out.tmp" "$out"
  log "built $3 in $((SECONDS - start))s"
}

mkdir -p "$bin_dir"
total_start=$SECONDS

reports_version "$bin_dir/etcd" "etcd Version: ${ETCD_VERSION#v}" \
  || build etcd go.etcd.io/etcd/server/v3 etcd "-s -w"
reports_version "$bin_dir/kube-apiserver" "Kubernetes $KUBERNETES_VERSION" \
  || build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$(kube_ldflags)"
reports_version "$bin_dir/kube-controller-manager" "Kubernetes $KUBERNETES_VERSION" \
  || build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$(kube_ldflags)"
reports_version "$bin_dir/kubectl" "\"gitVersion\": \"$KUBERNETES_VERSION\"" \
  || build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$(kube_ldflags)"
reports_version "$bin_dir/helm" "Version:\"$HELM_VERSION\"" \
  || build helm helm.sh/helm/v3/cmd/helm helm "$(helm_ldflags)"

log "control plane ready in $((SECONDS - total_start))s: $bin_dir"
echo "$bin_dir"
