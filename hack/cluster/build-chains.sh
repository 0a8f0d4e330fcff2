#!/usr/bin/env bash
# Builds Tekton Chains' controller and cosign from the Go module proxy, each
# inside a writable copy of its own module so that its own go.mod/go.sum (and
# Chains' replace directives) apply. Cached outside the work tree, keyed by
# version; rebuilt only when missing. Only the opt-in Chains pass uses them
# (MAB_CHAINS=1, make test-e2e-chains).
#
#   hack/cluster/build-chains.sh   # -> $CACHE/chains-$CHAINS_VERSION/{controller,config/}
#                                  #    $CACHE/cosign-$COSIGN_VERSION/cosign
#
# Versions: Chains v0.26.2 (Feb 2026) is the newest release the module proxy
# serves here; it is built against tektoncd/pipeline v1.6 and reads the v1
# TaskRun/PipelineRun API, which Pipeline v1.12 serves unchanged. cosign
# v2.6.2 is the version Chains v0.26.2 itself links (same signature and
# attestation formats; the module downloads are shared).
set -euo pipefail
CHAINS_VERSION="${CHAINS_VERSION:-v0.26.2}"
COSIGN_VERSION="${COSIGN_VERSION:-v2.6.2}"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
CHAINS_OUT="${CACHE}/chains-${CHAINS_VERSION}"
COSIGN_OUT="${CACHE}/cosign-${COSIGN_VERSION}"

# One local change to Chains, recorded in $CHAINS_OUT/PATCHES: knative's
# sharedmain (the version Chains links) serves health probes on :8080, a
# constant; out of cluster, on the host's network, Tekton's controller holds
# that port already and Chains exits ("listen tcp :8080: bind: address already
# in use"). The patch starts Chains with sharedmain.WithHealthProbesDisabled;
# chains.sh judges readiness from its log. Nothing else differs from upstream.
CHAINS_PATCHES="no-health-probes"

# build MODULE VERSION PKG OUTFILE [PATCH]: go build PKG inside a copy of MODULE@VERSION.
build() {
  local mod=$1 ver=$2 pkg=$3 out=$4 patch=${5:-} tmp src t0
  t0=$(date +%s)
  echo "build-chains: building ${mod}@${ver} ${pkg} (several minutes on 2 cores)" >&2
  tmp="$(mktemp -d)"
  src="$(go env GOMODCACHE)/${mod}@${ver}"
  if [ ! -d "$src" ]; then
    (cd "$tmp" && go mod download "${mod}@${ver}")
  fi
  cp -r "$src" "$tmp/src"; chmod -R u+w "$tmp/src"
  mkdir -p "$(dirname "$out")"
  if [ "$pkg" = ./cmd/controller ] && [ -d "$tmp/src/config" ]; then
    rm -rf "$(dirname "$out")/config"; cp -r "$tmp/src/config" "$(dirname "$out")/config"
  fi
  if [ "$patch" = no-health-probes ]; then
    sed -i 's/sharedmain.MainWithConfig(ctx, /sharedmain.MainWithConfig(sharedmain.WithHealthProbesDisabled(ctx), /' "$tmp/src/cmd/controller/main.go"
    grep -q 'WithHealthProbesDisabled(ctx)' "$tmp/src/cmd/controller/main.go" || { echo "build-chains: the patch no longer applies" >&2; exit 1; }
  fi
  (cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -ldflags "-s -w" -o "${out}.tmp" "$pkg")
  mv "${out}.tmp" "$out"
  chmod -R u+w "$tmp"; rm -rf "$tmp"
  echo "build-chains: built ${out} in $(( $(date +%s) - t0 ))s" >&2
}

if [ ! -x "${CHAINS_OUT}/controller" ] || [ ! -d "${CHAINS_OUT}/config" ] ||
   [ "$(cat "${CHAINS_OUT}/PATCHES" 2>/dev/null)" != "$CHAINS_PATCHES" ]; then
  build github.com/tektoncd/chains "$CHAINS_VERSION" ./cmd/controller "${CHAINS_OUT}/controller" "$CHAINS_PATCHES"
  echo "$CHAINS_PATCHES" > "${CHAINS_OUT}/PATCHES"
fi
if [ ! -x "${COSIGN_OUT}/cosign" ]; then
  build github.com/sigstore/cosign/v2 "$COSIGN_VERSION" ./cmd/cosign "${COSIGN_OUT}/cosign"
fi
