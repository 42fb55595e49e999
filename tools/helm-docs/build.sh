#!/usr/bin/env bash
# Builds helm-docs (which writes the chart's README from values.yaml's comments) from the pinned
# wrapper module next to this script, into a versioned cache outside the repository. A cached
# binary is reused when it reports the pinned version; otherwise it is rebuilt (under a minute).
#
# Prints the path of the binary on its last line of stdout.
# Environment: DOKS_ACCESS_CACHE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/doks-access-operator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The Go module github.com/norwoodj/helm-docs v1.14.2 is helm-docs 1.14.2.
HELM_DOCS_VERSION=1.14.2

# The cache key changes whenever the pin, the go.sum or this script changes.
key="$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
cache_root="${DOKS_ACCESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/doks-access-operator}"
binary="$cache_root/helm-docs/helm-docs-$HELM_DOCS_VERSION-$key/helm-docs"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly

log() { printf '[helm-docs] %s\n' "$*" >&2; }

# The whole output is read before matching: `grep -q` in a pipe could SIGPIPE the binary.
if [ -x "$binary" ] && reported="$("$binary" --version 2>/dev/null)" \
  && grep -qxF "helm-docs version $HELM_DOCS_VERSION" <<<"$reported"; then
  echo "$binary"
  exit 0
fi

mkdir -p "$(dirname "$binary")"
start=$SECONDS
log "building helm-docs $HELM_DOCS_VERSION"
ldflags="-s -w -X main.version=$HELM_DOCS_VERSION"
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$binary.tmp" github.com/norwoodj/helm-docs/cmd/helm-docs)
mv "$binary.tmp" "$binary"
log "built helm-docs in $((SECONDS - start))s: $binary"
echo "$binary"
