#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter) from the pinned wrapper module next to
# this script, into a versioned cache outside the repository. A cached binary is reused when it
# reports the pinned version; otherwise it is rebuilt (under a minute on 2 cores).
#
# Prints the path of the binary on its last line of stdout.
# Environment: DOKS_ACCESS_CACHE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/doks-access-operator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ACTIONLINT_VERSION=1.7.12

# The cache key changes whenever the pin, the go.sum or this script changes.
key="$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
cache_root="${DOKS_ACCESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/doks-access-operator}"
binary="$cache_root/actionlint/actionlint-$ACTIONLINT_VERSION-$key/actionlint"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly

log() { printf '[actionlint] %s\n' "$*" >&2; }

# The whole output is read before matching: `grep -q` in a pipe could SIGPIPE the binary.
if [ -x "$binary" ] && reported="$("$binary" -version 2>/dev/null)" \
  && grep -qxF "$ACTIONLINT_VERSION" <<<"$(head -1 <<<"$reported")"; then
  echo "$binary"
  exit 0
fi

mkdir -p "$(dirname "$binary")"
start=$SECONDS
log "building actionlint $ACTIONLINT_VERSION"
ldflags="-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$binary.tmp" github.com/rhysd/actionlint/cmd/actionlint)
mv "$binary.tmp" "$binary"
log "built actionlint in $((SECONDS - start))s: $binary"
echo "$binary"
