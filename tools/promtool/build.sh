#!/usr/bin/env bash
# Builds promtool (Prometheus's rule checker and rule unit-test runner) from the pinned wrapper
# module next to this script, into a versioned cache outside the repository. A cached binary is
# reused when it reports the pinned version; otherwise it is rebuilt (about 10 minutes on 2 cores).
#
# Prints the path of the binary on its last line of stdout.
# Environment: DOKS_ACCESS_CACHE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/doks-access-operator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The Go module github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_VERSION=3.16.0

# The cache key changes whenever the pin, the go.sum or this script changes.
key="$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
cache_root="${DOKS_ACCESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/doks-access-operator}"
binary="$cache_root/promtool/prometheus-$PROMETHEUS_VERSION-$key/promtool"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly

log() { printf '[promtool] %s\n' "$*" >&2; }

# The whole output is read before matching: `grep -q` in a pipe could SIGPIPE the binary.
if [ -x "$binary" ] && reported="$("$binary" --version 2>/dev/null)" \
  && grep -qF "promtool, version $PROMETHEUS_VERSION " <<<"$reported"; then
  echo "$binary"
  exit 0
fi

mkdir -p "$(dirname "$binary")"
start=$SECONDS
log "building promtool $PROMETHEUS_VERSION"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
ldflags+=" -X github.com/prometheus/common/version.BuildDate=20260101-00:00:00"
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$binary.tmp" github.com/prometheus/prometheus/cmd/promtool)
mv "$binary.tmp" "$binary"
log "built promtool in $((SECONDS - start))s: $binary"
echo "$binary"
