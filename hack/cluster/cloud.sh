#!/usr/bin/env bash
# The local cluster's OpenShift Machine API on AWS (called by up.sh): installs
# openshift/api's MachineSet, Machine, Infrastructure and ClusterVersion CRDs
# (from the Go module cache, feature set Default), creates what an OpenShift
# cluster on AWS has (Infrastructure/cluster, ClusterVersion/version with a
# multi-arch payload, the coreos-bootimages ConfigMap, one worker MachineSet)
# and runs the machine controller hack/machinesim as a host process.
#
#   MAB_ARM64_NODE=static|machine   (from up.sh) which slots Machines may boot
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MODE="${MAB_ARM64_NODE:-static}"

# the binary, rebuilt only when its sources (or the module's dependencies) change
hash=$(cd "$ROOT" && ls go.sum hack/machinesim/*.go internal/capacity/*.go internal/testenv/*.go | grep -v '_test\.go$' | xargs cat | sha256sum | cut -c1-16)
BIN="${CACHE}/machinesim/machinesim-${hash}"
if [ ! -x "$BIN" ]; then
  mkdir -p "${CACHE}/machinesim"
  rm -f "${CACHE}/machinesim"/machinesim-*
  log "building hack/machinesim"
  (cd "$ROOT" && nice go build -o "${BIN}.tmp" ./hack/machinesim) && mv "${BIN}.tmp" "$BIN"
fi

export KUBECONFIG="${KUBECONFIG_FILE}"
(cd "$ROOT" && MAB_ROOT="$ROOT" "$BIN" seed --stream "${ROOT}/controllers/testdata/capacity/stream.json")

# Machines adopt the static amd64 node; in machine mode they boot the arm64 slot.
args=(run --adopt "amd64=$(node_name amd64)")
[ "$MODE" = machine ] && args+=(--boot arm64)
if pid_alive machinesim && [ "$(cat "${STATE}/machinesim.args" 2>/dev/null)" != "${BIN} ${args[*]}" ]; then
  stop machinesim
fi
echo "${BIN} ${args[*]}" > "${STATE}/machinesim.args"
MAB_ROOT="$ROOT" start machinesim "$BIN" "${args[@]}"
log "Machine API (hack/machinesim) running, arm64 node: ${MODE}"
