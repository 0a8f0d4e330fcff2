#!/usr/bin/env bash
# Tekton Chains on the local cluster, out of cluster like Tekton's controller
# (tekton.sh): opt-in, started by up.sh only with MAB_CHAINS=1.
#
#   hack/cluster/chains.sh start   # config, signing key, controller (PID file, ${LOGS}/chains-controller.log)
#   hack/cluster/chains.sh stop
#
# What start installs, as Chains' release manifests would (namespace
# tekton-chains, its SYSTEM_NAMESPACE):
# - its logging, leader-election and observability ConfigMaps (create only);
# - ConfigMap chains-config: TaskRuns and PipelineRuns attested in slsa/v1
#   (in-toto, SLSA v0.2 predicate), images signed (simplesigning), every
#   signature and attestation stored "oci": next to the image in its own
#   repository of the local registry (plain HTTP:
#   storage.oci.repository.insecure), deep inspection of PipelineRuns (the
#   per-architecture images of the child TaskRuns are subjects too), no
#   transparency log (no Rekor here);
# - Secret signing-secrets: a cosign key pair with an empty password,
#   generated once by cosign into ${STATE}/chains (cosign.pub verifies).
# Chains reads its key from the files of that Secret mounted at
# /etc/signing-secrets (a path compiled into it). Out of cluster the
# controller runs in a private mount namespace whose /etc is an overlay of the
# host's /etc with the Secret's files written under /etc/signing-secrets: the
# host's /etc is not touched. It talks to the API server with the admin
# kubeconfig (system:masters), as Tekton's controller does here, not with the
# ServiceAccount and ClusterRoles of Chains' release manifests. It is built
# with its health-probe server off (build-chains.sh: knative's fixed :8080 is
# held by Tekton's controller on this host); readiness is read from its log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NS=tekton-chains
DIR="${STATE}/chains"

# Chains puts its finalizer on every TaskRun and PipelineRun it sees and
# removes it once it signed them; stopped, it would leave them undeletable
# (a namespace stuck Terminating). stop removes what it left.
unfinalize() {
  kc get --raw /readyz >/dev/null 2>&1 || return 0
  local kind ns name fins keep n=0
  for kind in taskruns.tekton.dev pipelineruns.tekton.dev; do
    while read -r ns name fins; do
      [[ "$fins" == *chains.tekton.dev* ]] || continue
      keep=$(tr ',' '\n' <<<"$fins" | { grep -v -e '^chains\.tekton\.dev' -e '^$' || true; } | sed 's/.*/"&"/' | paste -sd, -)
      kc -n "$ns" patch "$kind" "$name" --type merge -p "{\"metadata\":{\"finalizers\":[${keep}]}}" >/dev/null 2>&1 && n=$((n + 1))
    done < <(kc get "$kind" -A -o go-template='{{range .items}}{{.metadata.namespace}} {{.metadata.name}} {{range .metadata.finalizers}}{{.}},{{end}}{{"\n"}}{{end}}' 2>/dev/null)
  done
  [ "$n" = 0 ] || log "removed Tekton Chains' finalizer from ${n} TaskRuns/PipelineRuns"
}

case "${1:-}" in
stop)
  stop chains-controller
  unfinalize
  exit 0
  ;;
start) ;;
*) die "usage: $0 start|stop" ;;
esac

CHAINS_VERSION="$CHAINS_VERSION" COSIGN_VERSION="$COSIGN_VERSION" "${ROOT}/hack/cluster/build-chains.sh"
[ -x "${CHAINS_BIN}/controller" ] && [ -x "${COSIGN}" ] || die "Chains or cosign missing in the cache (hack/cluster/build-chains.sh)"
mkdir -p "$DIR"

kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
for f in "${CHAINS_BIN}"/config/config-*.yaml; do
  kc create -f "$f" 2>/dev/null >/dev/null || true   # create only: later edits are kept
done
# no metrics exporter (knative would bind :9090; the port below is a fallback)
kc -n "$NS" patch configmap tekton-chains-config-observability --type merge \
  -p '{"data":{"metrics.backend-destination":"none"}}' >/dev/null

# the signing key: generated once, kept with the state
if [ ! -s "${DIR}/cosign.key" ]; then
  (cd "$DIR" && COSIGN_PASSWORD="" "${COSIGN}" generate-key-pair >/dev/null 2>&1) || die "cosign generate-key-pair failed"
  log "generated the Chains signing key pair ${DIR}/cosign.{key,pub}"
fi
: > "${DIR}/cosign.password"
kc -n "$NS" create secret generic signing-secrets \
  --from-file=cosign.key="${DIR}/cosign.key" --from-file=cosign.pub="${DIR}/cosign.pub" \
  --from-file=cosign.password="${DIR}/cosign.password" --dry-run=client -o yaml | kc apply -f - >/dev/null

kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: chains-config, namespace: ${NS}}
data:
  artifacts.taskrun.format: slsa/v1
  artifacts.taskrun.storage: oci
  artifacts.taskrun.signer: x509
  artifacts.pipelinerun.format: slsa/v1
  artifacts.pipelinerun.storage: oci
  artifacts.pipelinerun.signer: x509
  artifacts.pipelinerun.enable-deep-inspection: "true"
  artifacts.oci.format: simplesigning
  artifacts.oci.storage: oci
  artifacts.oci.signer: x509
  storage.oci.repository.insecure: "true"
  transparency.enabled: "false"
YAML

if pid_alive chains-controller; then
  log "Tekton Chains controller already running (chains.sh stop; chains.sh start to reload the key)"
  exit 0
fi

# The Secret as its volume mount would show it: read back from the API.
mnt="${DIR}/etc-overlay"
rm -rf "${mnt}/upper/signing-secrets"
mkdir -p "${mnt}/upper/signing-secrets" "${mnt}/work"
for k in cosign.key cosign.pub cosign.password; do
  kc -n "$NS" get secret signing-secrets -o "go-template={{index .data \"$k\" | base64decode}}" > "${mnt}/upper/signing-secrets/$k"
done
chmod 0700 "${mnt}/upper/signing-secrets"; chmod 0600 "${mnt}/upper/signing-secrets/"*

# The controller (only its new log lines count for readiness); pid = the process exec'd by setsid -> unshare -> sh.
logsize=$(stat -c %s "${LOGS}/chains-controller.log" 2>/dev/null || echo 0)
# shellcheck disable=SC2016
env SYSTEM_NAMESPACE="$NS" METRICS_DOMAIN=tekton.dev/chains \
  CONFIG_OBSERVABILITY_NAME=tekton-chains-config-observability \
  CONFIG_LEADERELECTION_NAME=tekton-chains-config-leader-election CONFIG_LOGGING_NAME=config-logging \
  KUBERNETES_MIN_VERSION=v1.28.0 METRICS_PROMETHEUS_PORT="${CHAINS_METRICS_PORT}" PROFILING_PORT=$((CHAINS_METRICS_PORT + 1)) \
  KUBECONFIG="${KUBECONFIG_FILE}" \
  bash -c 'source "$1"; shift; start "$@"' _ "$(dirname "${BASH_SOURCE[0]}")/lib.sh" chains-controller \
  unshare --mount --propagation private sh -c \
  'mount -t overlay mab-chains-etc -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc && shift && exec "$@"' _ "$mnt" \
  "${CHAINS_BIN}/controller" -kubeconfig "${KUBECONFIG_FILE}"
# ready: both reconcilers started (knative sharedmain logs it once the informers synced)
wait_for "Chains controller reconcilers" 90 bash -c \
  "kill -0 \$(cat '${PIDS}/chains-controller.pid') && tail -c +$((logsize + 1)) '${LOGS}/chains-controller.log' | grep -q 'Started workers'"
pid_alive chains-controller || die "Chains controller exited, see ${LOGS}/chains-controller.log"
log "Tekton Chains ${CHAINS_VERSION} controller running (signing key ${DIR}/cosign.pub)"
