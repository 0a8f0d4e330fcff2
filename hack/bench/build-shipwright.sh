#!/usr/bin/env bash
# Builds Shipwright Build's controller (github.com/shipwright-io/build,
# cmd/shipwright-build-controller) from the Go module proxy, inside a writable
# copy of the module so that Shipwright's own go.mod/go.sum apply (the
# operator's go.mod is untouched). Also copies the module's deploy/ (CRDs,
# ClusterRole) and samples/v1beta1/buildstrategy (the buildah strategy). Cached outside the work tree, keyed by version; used by the
# side-by-side benchmark (hack/bench/sidebyside).
#
#   hack/bench/build-shipwright.sh   # -> $CACHE/shipwright-$SHIPWRIGHT_VERSION/{shipwright-build-controller,deploy/,buildstrategy/}
set -euo pipefail
SHIPWRIGHT_VERSION="${SHIPWRIGHT_VERSION:-v0.17.0}"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
OUT="${CACHE}/shipwright-${SHIPWRIGHT_VERSION}"
BIN="${OUT}/shipwright-build-controller"

if [ -x "$BIN" ] && [ -d "${OUT}/deploy/crds" ] && [ -d "${OUT}/buildstrategy" ]; then exit 0; fi

echo "build-shipwright: building shipwright-io/build ${SHIPWRIGHT_VERSION} controller (a few minutes on 2 cores)" >&2
mkdir -p "$OUT"
tmp="$(mktemp -d)"; trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
modcache="$(go env GOMODCACHE)"
src="${modcache}/github.com/shipwright-io/build@${SHIPWRIGHT_VERSION}"
if [ ! -d "$src" ]; then
  (cd "$tmp" && go mod download "github.com/shipwright-io/build@${SHIPWRIGHT_VERSION}")
fi
cp -r "$src" "$tmp/build"; chmod -R u+w "$tmp/build"
rm -rf "${OUT}/deploy"; cp -r "$tmp/build/deploy" "${OUT}/deploy"
rm -rf "${OUT}/buildstrategy"; cp -r "$tmp/build/samples/v1beta1/buildstrategy" "${OUT}/buildstrategy"
if [ -x "$BIN" ]; then exit 0; fi
cd "$tmp/build"
start=$(date +%s)
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${BIN}.tmp" ./cmd/shipwright-build-controller
mv "${BIN}.tmp" "$BIN"
echo "build-shipwright: built ${BIN} in $(( $(date +%s) - start )) s" >&2
