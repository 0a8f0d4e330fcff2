#!/usr/bin/env bash
# Installs Tekton Pipelines' CRDs and ConfigMaps (default feature flags) into the
# local cluster and runs its controller out of cluster. Called by up.sh.
# No webhook: the CRDs are applied without spec.conversion (v1 objects only).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CFG="${TEKTON_BIN}/config"

kc apply -f "${CFG}/100-namespace/" >/dev/null
for f in "${CFG}"/300-crds/*.yaml; do
  # drop the "  conversion:" block (webhook conversion) from each CRD
  awk '/^  conversion:/{skip=1; next} skip && /^  [^ ]|^[^ ]/{skip=0} !skip' "$f"
  echo "---"
done | kc apply --server-side --force-conflicts -f - >/dev/null
for f in "${CFG}"/config-*.yaml; do
  # create only: a later `kubectl edit` of the feature flags is kept
  kc create -f "$f" 2>/dev/null >/dev/null || true
done
# no metrics server (knative would bind :9090)
kc -n tekton-pipelines patch configmap config-observability --type merge -p '{"data":{"metrics-protocol":"none"}}' >/dev/null
kc wait --for=condition=Established crd/pipelineruns.tekton.dev crd/taskruns.tekton.dev --timeout=60s >/dev/null

env SYSTEM_NAMESPACE=tekton-pipelines KUBERNETES_MIN_VERSION=v1.28.0 \
  CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging \
  CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags \
  CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire \
  METRICS_DOMAIN=tekton.dev/pipeline PROBES_PORT="${TEKTON_PROBES_PORT}" PROFILING_PORT=$((TEKTON_PROBES_PORT + 1)) \
  KUBECONFIG="${KUBECONFIG_FILE}" \
  bash -c 'source "$1"; shift; start "$@"' _ "$(dirname "${BASH_SOURCE[0]}")/lib.sh" tekton-controller \
  "${TEKTON_BIN}/controller" -kubeconfig "${KUBECONFIG_FILE}" \
  -entrypoint-image "${TEKTON_IMG_PREFIX}-entrypoint:${TEKTON_VERSION}" \
  -nop-image "${TEKTON_IMG_PREFIX}-nop:${TEKTON_VERSION}" \
  -sidecarlogresults-image "${TEKTON_IMG_PREFIX}-sidecarlogresults:${TEKTON_VERSION}" \
  -workingdirinit-image "${TEKTON_IMG_PREFIX}-workingdirinit:${TEKTON_VERSION}" \
  -shell-image "$(img base)" -shell-image-win "mcr.microsoft.com/powershell:nanoserver"
wait_for "Tekton controller probes" 60 curl -fsS "http://127.0.0.1:${TEKTON_PROBES_PORT}/readiness"
log "Tekton ${TEKTON_VERSION} controller running"
