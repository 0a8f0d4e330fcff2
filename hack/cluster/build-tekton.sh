#!/usr/bin/env bash
# Builds Tekton Pipelines' controller and the binaries of its helper images from
# the Go module proxy, inside a writable copy of the module so that Tekton's own
# go.mod/go.sum apply. Cached outside the work tree, keyed by version.
#
#   hack/cluster/build-tekton.sh        # -> $CACHE/tekton-$TEKTON_VERSION/{controller,entrypoint,nop,...}
set -euo pipefail
TEKTON_VERSION="${TEKTON_VERSION:-v1.12.0}"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
OUT="${CACHE}/tekton-${TEKTON_VERSION}"
CMDS=(controller entrypoint nop workingdirinit sidecarlogresults)

missing=()
for c in "${CMDS[@]}"; do [ -x "${OUT}/$c" ] || missing+=("$c"); done
[ -d "${OUT}/config" ] || missing+=(config)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

echo "build-tekton: building tektoncd/pipeline ${TEKTON_VERSION}: ${missing[*]} (~5 min on 2 cores)" >&2
mkdir -p "$OUT"
tmp="$(mktemp -d)"; trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
modcache="$(go env GOMODCACHE)"
src="${modcache}/github.com/tektoncd/pipeline@${TEKTON_VERSION}"
if [ ! -d "$src" ]; then
  (cd "$tmp" && go mod download "github.com/tektoncd/pipeline@${TEKTON_VERSION}")
fi
cp -r "$src" "$tmp/pipeline"; chmod -R u+w "$tmp/pipeline"
rm -rf "${OUT}/config"; cp -r "$tmp/pipeline/config" "${OUT}/config"
cd "$tmp/pipeline"
for c in "${CMDS[@]}"; do
  [ -x "${OUT}/$c" ] && continue
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${OUT}/$c.tmp" "./cmd/$c"
  mv "${OUT}/$c.tmp" "${OUT}/$c"
  echo "build-tekton: built ${OUT}/$c" >&2
done
