#!/usr/bin/env bash
# Runs the operator on the local cluster the way users run it.
#
#   hack/cluster/operator.sh start|restart|stop|logs
#
# In cluster (MAB_OPERATOR_MODE=in-cluster, the default): builds the operator
# image from the work tree (`make docker-build`: the static binary cross-
# compiled for linux/amd64 and linux/arm64, FROM scratch, uid 65532), pushes
# the manifest list to the cluster's registry, and deploys it with
# `make deploy` (config/default: restricted pod in the restricted
# multiarch-build-system namespace, read-only root filesystem, probes, leader
# election, the ServiceAccount with config/default's RBAC, which a test keeps
# equal to the bundle CSV's), by digest, with the local images as its flags.
# The pod reaches the API server through the "kubernetes" Service, as
# rest.InClusterConfig does anywhere (up.sh plays kube-proxy for that one
# ClusterIP). stop deletes the Deployment only (CRDs, RBAC and builds stay).
#
# As OLM installs it (MAB_OPERATOR_MODE=olm): the same image, installed from
# the bundle (MAB_OLM_BUNDLE, default bundle/) by hack/olminstall into
# MAB_OLM_NAMESPACE (default openshift-operators) as OLM does for an
# AllNamespaces OperatorGroup, the CSV's relatedImages resolved to the local
# registry. Only one mode runs at a time: starting one removes the other.
#
# Out of cluster (MAB_OPERATOR_MODE=local, like `make run`): `go build .` run on
# the host with a kubeconfig holding a token of the same ServiceAccount.
#
# Log: ${STATE}/logs/operator.log (in cluster: the pods' logs, saved by stop
# and logs). Extra manager flags: MAB_OPERATOR_ARGS.
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

MODE="${MAB_OPERATOR_MODE:-in-cluster}"
OP_NS=multiarch-build-system
OP_DEPLOY=multiarch-build-controller-manager

save_logs() {
  [ -f "${STATE}/env" ] || return 0
  kc -n "$OP_NS" logs "deploy/${OP_DEPLOY}" --all-containers --tail=-1 > "${LOGS}/operator.log" 2>&1 || true
  kc -n "$OP_NS" logs "deploy/${OP_DEPLOY}" --all-containers --tail=-1 --previous > "${LOGS}/operator-previous.log" 2>/dev/null || true
}

OLM_NS="${MAB_OLM_NAMESPACE:-openshift-operators}"
olminstall() { (cd "$ROOT" && go run ./hack/olminstall -kubeconfig "${KUBECONFIG_FILE}" "$@"); }

stop_olm() {
  kc get --raw /readyz >/dev/null 2>&1 || return 0
  kc get ns "$OLM_NS" >/dev/null 2>&1 || return 0
  kc -n "$OLM_NS" logs -l control-plane=controller-manager --all-containers --tail=-1 > "${LOGS}/operator-olm.log" 2>&1 || true
  olminstall -uninstall -namespace "$OLM_NS" >&2
}

# wait_admission: the capacity admission policy's parameter kind is the
# BuildCapacityPolicy CRD. When that CRD was deleted and created again (an OLM
# uninstall, then this deploy), kube-apiserver keeps the policy's "failed to
# find resource referenced by paramKind" until the policy object changes:
# touch it, then wait until a server-side dry run of a MultiArchBuild is
# judged by the policies again.
wait_admission() {
  local vap=multiarch-build-capacity-policy out i
  kc get validatingadmissionpolicy "$vap" >/dev/null 2>&1 || return 0
  kc wait --for=condition=Established crd/buildcapacitypolicies.build.multiarch.io --timeout=60s >/dev/null
  for ((i = 0; i < 60; i++)); do
    out=$(kc create --dry-run=server -o name -f - 2>&1 <<YAML || true
apiVersion: build.multiarch.io/v1alpha1
kind: MultiArchBuild
metadata: {name: admission-probe, namespace: default}
spec:
  source: {git: {url: "git://${SERVICE_IP}:${GIT_PORT}/probe.git"}}
  output: {image: "${REGISTRY}/probe/probe:latest"}
YAML
)
    case "$out" in
      *"failed to configure policy"*|*"paramKind"*)
        ((i % 5 == 0)) && kc annotate --overwrite validatingadmissionpolicy "$vap" "multiarch.local/resynced=$(date +%s%N)" >/dev/null
        sleep 1 ;;
      *) return 0 ;;
    esac
  done
  log "WARNING: ${vap} still cannot resolve its parameter kind: ${out}"
}

stop_in_cluster() {
  kc get --raw /readyz >/dev/null 2>&1 || return 0
  if kc -n "$OP_NS" get deploy "$OP_DEPLOY" >/dev/null 2>&1; then
    save_logs
    kc -n "$OP_NS" delete deploy "$OP_DEPLOY" --wait=true --timeout=60s >/dev/null || true
    log "deleted the operator's Deployment ${OP_NS}/${OP_DEPLOY} (log: ${LOGS}/operator.log)"
  fi
}

case "${1:-start}" in
  stop) stop_operator; stop_in_cluster; stop_olm; exit 0 ;;
  logs) save_logs; cat "${LOGS}/operator.log"; exit 0 ;;
  restart) stop_operator; stop_in_cluster ;;
  start) ;;
  *) die "usage: $0 start|restart|stop|logs" ;;
esac
[ -f "${STATE}/env" ] || die "the cluster is not up: run hack/cluster/up.sh"
source "${STATE}/env"

if [ "$MODE" = in-cluster ] || [ "$MODE" = olm ]; then
  t0=$(date +%s)
  image="${REGISTRY}/mab/operator:dev"
  bh="buildah --root ${CACHE}/buildah/root --runroot /run/mab-buildah-$(echo "$CACHE" | md5sum | cut -c1-8) --storage-driver overlay"
  log "building the operator image (make docker-build: linux/amd64 + linux/arm64, FROM scratch)"
  make -s -C "$ROOT" docker-build IMG="$image" BUILDAH="$bh" > "${LOGS}/operator-image.log" 2>&1 \
    || { tail -30 "${LOGS}/operator-image.log" >&2; die "make docker-build failed (${LOGS}/operator-image.log)"; }
  rm -f "${STATE}/operator.digest"
  make -s -C "$ROOT" docker-push IMG="$image" BUILDAH="$bh" PUSH_FLAGS="--tls-verify=false --digestfile ${STATE}/operator.digest" >> "${LOGS}/operator-image.log" 2>&1 \
    || { tail -30 "${LOGS}/operator-image.log" >&2; die "make docker-push failed"; }
  # Debian's buildah 1.28 may exit 0 after a failed manifest push: trust the digest file.
  digest="$(cat "${STATE}/operator.digest" 2>/dev/null || true)"
  [[ "$digest" == sha256:* ]] || die "pushing ${image} wrote no digest (${LOGS}/operator-image.log)"
  log "pushed ${image%:*}@${digest} ($(( $(date +%s) - t0 ))s)"
  if [ "$MODE" = olm ]; then
    stop_in_cluster
    bundle="${MAB_OLM_BUNDLE:-${ROOT}/bundle}"
    olminstall -bundle "$bundle" -namespace "$OLM_NS" -related "manager=${image%:*}@${digest}" \
      -related "buildah=${MAB_BUILDER_IMAGE}" -related "git=${MAB_GIT_IMAGE}" -related "nodejs=${MAB_NODEJS_IMAGE}" ${MAB_MAVEN_IMAGE:+-related "maven=${MAB_MAVEN_IMAGE}"} \
      > "${LOGS}/operator-deploy.log" 2>&1 || { tail -30 "${LOGS}/operator-deploy.log" >&2; die "hack/olminstall failed"; }
    pod=$(kc -n "$OLM_NS" get pods -l control-plane=controller-manager --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name} on {.items[0].spec.nodeName} as ServiceAccount {.items[0].spec.serviceAccountName}')
    log "operator installed as OLM would from ${bundle} ($(( $(date +%s) - t0 ))s): pod ${OLM_NS}/${pod}, image @${digest}, relatedImages resolved to ${REGISTRY}"
    exit 0
  fi
  stop_olm
  # shellcheck disable=SC2086
  make -s -C "$ROOT" deploy IMG="${image%:*}@${digest}" KUBECTL="$KUBECTL --kubeconfig ${KUBECONFIG_FILE}" \
    DEPLOY_ARGS="--builder-image=${MAB_BUILDER_IMAGE} --git-image=${MAB_GIT_IMAGE} --nodejs-image=${MAB_NODEJS_IMAGE} ${MAB_MAVEN_IMAGE:+--maven-image=${MAB_MAVEN_IMAGE}} --tekton-namespace=tekton-pipelines --zap-encoder=console ${MAB_OPERATOR_ARGS:-}" \
    > "${LOGS}/operator-deploy.log" 2>&1 || { tail -30 "${LOGS}/operator-deploy.log" >&2; die "make deploy failed"; }
  kc wait --for=condition=Established crd/multiarchbuilds.build.multiarch.io --timeout=60s >/dev/null
  kc -n "$OP_NS" rollout status "deploy/${OP_DEPLOY}" --timeout=180s >&2 \
    || { kc -n "$OP_NS" get pods -o wide >&2; kc -n "$OP_NS" describe pods >&2 | tail -40; die "the operator's Deployment did not become ready"; }
  wait_admission
  pod=$(kc -n "$OP_NS" get pods -l control-plane=controller-manager --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name} on {.items[0].spec.nodeName} as ServiceAccount {.items[0].spec.serviceAccountName}')
  log "operator running in cluster ($(( $(date +%s) - t0 ))s): pod ${OP_NS}/${pod}, image @${digest}, admission +${OPENSHIFT_ADMISSION_PLUGINS}"
  exit 0
fi

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
  --builder-image "${MAB_BUILDER_IMAGE}" --git-image "${MAB_GIT_IMAGE}" --nodejs-image "${MAB_NODEJS_IMAGE}" ${MAB_MAVEN_IMAGE:+--maven-image "${MAB_MAVEN_IMAGE}"} \
  --tekton-namespace tekton-pipelines --metrics-bind-address 0 --health-probe-bind-address "127.0.0.1:${MAB_OPERATOR_PROBE_PORT:-18091}" \
  --zap-encoder console ${MAB_OPERATOR_ARGS:-}
wait_for "operator health probe" 60 curl -fsS "http://127.0.0.1:${MAB_OPERATOR_PROBE_PORT:-18091}/healthz"
log "operator running as ${identity}: builder=${MAB_BUILDER_IMAGE} git=${MAB_GIT_IMAGE} nodejs=${MAB_NODEJS_IMAGE} maven=${MAB_MAVEN_IMAGE:-}"
