#!/usr/bin/env bash
# Builds the operator from the work tree (the repo's main package), installs
# its CRDs into the local cluster and runs it out of cluster against the
# cluster's kubeconfig, with the local images as its image flags.
#
#   hack/cluster/operator.sh start|restart|stop
# Log: ${STATE}/logs/operator.log. Extra manager flags: MAB_OPERATOR_ARGS.
#
# Identity (MAB_OPERATOR_RBAC): the operator runs with the token of the
# ServiceAccount that config/default deploys it with, after applying
# config/default's RBAC (everything but the Deployment), so missing RBAC rules
# fail here as they would in a real install. auto (default): do so when
# config/default renders (bin/kustomize build, else kubectl kustomize), else warn and run as cluster
# admin; 1: require it; 0: always cluster admin.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_operator() {
  local f="${PIDS}/operator.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    log "stopped operator (pid $pid)"
  fi
  rm -f "$f"
}

case "${1:-start}" in
  stop) stop_operator; exit 0 ;;
  restart) stop_operator ;;
  start) ;;
  *) die "usage: $0 start|restart|stop" ;;
esac
[ -f "${STATE}/env" ] || die "the cluster is not up: run hack/cluster/up.sh"
source "${STATE}/env"

mkdir -p "${STATE}/bin"
log "building the operator (go build -o ${STATE}/bin/manager .)"
(cd "$ROOT" && go build -o "${STATE}/bin/manager.tmp" .) && mv "${STATE}/bin/manager.tmp" "${STATE}/bin/manager"
kc apply --server-side --force-conflicts -f "${ROOT}/config/crd/bases" >/dev/null
kc wait --for=condition=Established crd/multiarchbuilds.build.multiarch.io --timeout=60s >/dev/null

opkc="${KUBECONFIG_FILE}"
identity="cluster admin (kubeconfig ${KUBECONFIG_FILE})"
mode="${MAB_OPERATOR_RBAC:-auto}"
if [ "$mode" != 0 ]; then
  # the Makefile's pinned kustomize when installed (make kustomize), else kubectl's
  kustomize=("$KUBECTL" kustomize); [ -x "${ROOT}/bin/kustomize" ] && kustomize=("${ROOT}/bin/kustomize" build)
  if rendered="$("${kustomize[@]}" "${ROOT}/config/default" 2>"${LOGS}/operator-kustomize.err")"; then
    # drop the Deployment (the operator runs out of cluster); apply the rest
    awk 'BEGIN{RS="\n---\n"; ORS="\n---\n"} !/(^|\n)kind: Deployment\n/' <<<"$rendered" | kc apply --server-side --force-conflicts -f - >/dev/null
    sa=$(awk 'BEGIN{RS="\n---\n"} /(^|\n)kind: Deployment\n/' <<<"$rendered" | sed -n 's/^ *serviceAccountName: *//p' | head -1)
    sans=$(awk 'BEGIN{RS="\n---\n"} /(^|\n)kind: Deployment\n/' <<<"$rendered" | sed -n 's/^  namespace: *//p' | head -1)
    [ -n "$sa" ] && [ -n "$sans" ] || die "cannot find the Deployment's ServiceAccount in config/default"
    token=$(kc -n "$sans" create token "$sa" --duration=48h)
    opkc="${STATE}/operator.kubeconfig"
    sed -e "s|token: \".*\"|token: \"${token}\"|" -e "s|name: admin|name: operator|; s|user: admin|user: operator|" "${KUBECONFIG_FILE}" > "$opkc"
    identity="ServiceAccount ${sans}/${sa} with config/default's RBAC"
  elif [ "$mode" = 1 ]; then
    die "kustomize build config/default failed (see ${LOGS}/operator-kustomize.err); MAB_OPERATOR_RBAC=0 runs the operator as cluster admin"
  else
    log "WARNING: kustomize build config/default failed (${LOGS}/operator-kustomize.err): running the operator as cluster admin, its RBAC is NOT exercised"
  fi
fi

# shellcheck disable=SC2086
start operator "${STATE}/bin/manager" --kubeconfig "$opkc" \
  --builder-image "${MAB_BUILDER_IMAGE}" --git-image "${MAB_GIT_IMAGE}" --nodejs-image "${MAB_NODEJS_IMAGE}" \
  --tekton-namespace tekton-pipelines --metrics-bind-address 0 --health-probe-bind-address "127.0.0.1:${MAB_OPERATOR_PROBE_PORT:-18091}" \
  --zap-encoder console ${MAB_OPERATOR_ARGS:-}
wait_for "operator health probe" 60 curl -fsS "http://127.0.0.1:${MAB_OPERATOR_PROBE_PORT:-18091}/healthz"
log "operator running as ${identity}: builder=${MAB_BUILDER_IMAGE} git=${MAB_GIT_IMAGE} nodejs=${MAB_NODEJS_IMAGE}"
