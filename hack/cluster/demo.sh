#!/usr/bin/env bash
# `make demo`: from a fresh clone, build what is missing, start the local
# two-arch cluster, deploy the operator in it (its image built from the work
# tree, `make deploy`, as its ServiceAccount; hack/cluster/operator.sh), apply the sample
# (config/samples/e2e/multiarchbuild_hello.yaml, sources in
# hack/cluster/demo/hello served by the cluster's git daemon), stream its
# progress and print the pushed image. `make demo-down` stops everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
T0=$(date +%s)
"${ROOT}/hack/cluster/up.sh"
"${ROOT}/hack/cluster/operator.sh" restart
source "${STATE}/env"
T_UP=$(date +%s)

# the sample's sources, as a repository of the cluster's git daemon
repo="${MAB_GIT_ROOT}/demo-hello.git"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r "${ROOT}/hack/cluster/demo/hello/." "$tmp/"
git -C "$tmp" init -q -b main && git -C "$tmp" add . &&
  git -C "$tmp" -c user.name=demo -c user.email=demo@localhost commit -qm "demo: hello"
rm -rf "$repo" && git clone -q --bare "$tmp" "$repo"

ns=mab-demo
kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
# Pod Security as OpenShift's label syncer sets it where the builder's SCC
# (root, SETFCAP) may be used: baseline (docs/openshift-fidelity.md).
kc label namespace "$ns" --overwrite pod-security.kubernetes.io/enforce=baseline \
  pod-security.kubernetes.io/audit=baseline pod-security.kubernetes.io/warn=baseline >/dev/null
kc -n "$ns" delete multiarchbuild hello --ignore-not-found --wait=true >/dev/null
sed -e "s|\${MAB_GIT_BASE}|${MAB_GIT_BASE}|g" -e "s|\${MAB_BASE_IMAGE}|${MAB_BASE_IMAGE}|g" \
    -e "s|\${MAB_REGISTRY}|${MAB_REGISTRY}|g" -e "s|\${MAB_STORAGE_CLASS}|${MAB_STORAGE_CLASS}|g" \
    "${ROOT}/config/samples/e2e/multiarchbuild_hello.yaml" | kc apply -f - >/dev/null
log "applied MultiArchBuild ${ns}/hello -> ${MAB_REGISTRY}/demo/hello:v1"

# progress: phase and per-architecture state, printed on every change
start=$(date +%s); last=""
while :; do
  line=$(kc -n "$ns" get multiarchbuild hello -o jsonpath='{.status.phase}{range .status.platforms[*]}{"  "}{.platform}={.state}{"@"}{.nodeName}{end}' 2>/dev/null || true)
  if [ "$line" != "$last" ]; then printf '  %4ss  %s\n' "$(( $(date +%s) - start ))" "${line:-Pending}"; last=$line; fi
  case "$line" in Succeeded*|Failed*) break ;; esac
  [ $(( $(date +%s) - start )) -lt 1800 ] || die "no result after 30 minutes"
  sleep 1
done
T_END=$(date +%s)
run=$(kc -n "$ns" get multiarchbuild hello -o jsonpath='{.status.latestRun.name}')
echo "Tasks of PipelineRun ${run}:"
kc -n "$ns" get taskruns -l "tekton.dev/pipelineRun=${run}" --sort-by=.status.startTime \
  -o custom-columns='TASK:.metadata.labels.tekton\.dev/pipelineTask,NODE:.status.podName,START:.status.startTime,END:.status.completionTime,RESULT:.status.conditions[0].reason' |
  while read -r task pod s e r; do
    if [ "$task" = TASK ]; then printf '  %-14s %-10s %6s  %s\n' TASK NODE SECONDS RESULT; continue; fi
    node=$(kc -n "$ns" get pod "$pod" -o jsonpath='{.spec.nodeName}' 2>/dev/null || echo "?")
    secs="-"
    # The build is Succeeded once its index is pushed: the cleanup (finally)
    # may still be starting or running, without times yet.
    if [ "$s" != "<none>" ] && [ "$e" != "<none>" ]; then secs=$(( $(date -d "$e" +%s) - $(date -d "$s" +%s) )); fi
    [ "$r" != "<none>" ] || r=Pending
    printf '  %-14s %-10s %6s  %s\n' "$task" "${node:-?}" "$secs" "$r"
  done
if [ "${line%% *}" != Succeeded ]; then
  kc -n "$ns" get multiarchbuild hello -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  die "the build failed"
fi
image=$(kc -n "$ns" get multiarchbuild hello -o jsonpath='{.status.image}')
digest=$(kc -n "$ns" get multiarchbuild hello -o jsonpath='{.status.digest}')
echo
echo "Pushed: ${image}"
echo "Platforms in the index (as the registry serves it):"
curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json' \
  "http://${MAB_REGISTRY}/v2/demo/hello/manifests/${digest}" |
  jq -r '.manifests[] | "  \(.platform.os)/\(.platform.architecture)  \(.digest)"'
echo
log "demo done: cluster+operator ready in $(( T_UP - T0 ))s, build $(( T_END - start ))s wall"
echo "Try: hack/cluster/kubectl.sh -n ${ns} get mab hello; make demo-down to stop."
