#!/usr/bin/env bash
# Proves the local cluster without the operator: a hand-written two-arch
# PipelineRun (clone -> build-amd64 || build-arm64 -> push), each build task
# pinned to its node by taskRunSpecs nodeSelector, the shared PVC mounted as a
# task volume (not a workspace, so Tekton's affinity assistant stays out).
#   hack/cluster/smoke/smoke.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "${STATE}/env"
export KUBECONFIG
ns=mab-smoke
repo="${MAB_GIT_ROOT}/smoke.git"
if [ ! -d "$repo" ]; then
  tmp=$(mktemp -d)
  git init -q -b main "$tmp"
  printf 'FROM %s\nRUN uname -m > /arch && cp /bin/busybox /busybox-copy\n' "$MAB_BASE_IMAGE" > "$tmp/Containerfile"
  git -C "$tmp" add . && git -C "$tmp" -c user.email=smoke@local -c user.name=smoke commit -qm smoke
  git clone -q --bare "$tmp" "$repo"; rm -rf "$tmp"
fi
kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
run="smoke-$(date +%s)"
sed -e "s|@RUN@|$run|g" -e "s|@NS@|$ns|g" -e "s|@SC@|$MAB_STORAGE_CLASS|g" \
    -e "s|@GIT_URL@|$MAB_GIT_BASE/smoke.git|g" -e "s|@GIT_IMAGE@|$MAB_GIT_IMAGE|g" \
    -e "s|@BUILDER_IMAGE@|$MAB_BUILDER_IMAGE|g" -e "s|@OUT@|$MAB_REGISTRY/smoke/hello:$run|g" \
    "$(dirname "${BASH_SOURCE[0]}")/pipelinerun.yaml" | kc apply -f - >/dev/null
echo "PipelineRun $ns/$run"
t0=$(date +%s)
while :; do
  st=$(kc -n "$ns" get pipelinerun "$run" -o jsonpath='{.status.conditions[0].status} {.status.conditions[0].reason}')
  case "$st" in True*|False*) break ;; esac
  sleep 2
done
echo "finished in $(( $(date +%s) - t0 ))s: $st"
kc -n "$ns" get taskruns -l tekton.dev/pipelineRun="$run" \
  -o custom-columns=TASK:.metadata.labels.tekton\\.dev/pipelineTask,POD:.status.podName,START:.status.startTime,END:.status.completionTime,STATUS:.status.conditions[0].reason
kc -n "$ns" get pods -l tekton.dev/pipelineRun="$run" -o wide
kc -n "$ns" get pipelinerun "$run" -o jsonpath='{range .status.results[*]}{.name}={.value}{"\n"}{end}'
kc -n "$ns" delete pipelinerun,pvc "$run" --wait=false >/dev/null   # the PV goes back to the pool
[[ "$st" == True* ]]
