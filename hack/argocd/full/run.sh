#!/usr/bin/env bash
# Runs Argo CD's real application controller and repo server (v2.14.21) against
# a throwaway etcd + kube-apiserver and shows them syncing an Application from
# a local git repository holding a MultiArchBuild, and judging its health with
# the custom health check of the argocd-cm block of docs/gitops.md:
#
#   1. Synced, MultiArchBuild Progressing (no operator runs: no status yet)
#   2. status patched to a succeeded build of the current generation -> Healthy
#   3. status patched to a failed build                                -> Degraded
#
# Opt-in, not part of CI or the Makefile:
#
#   hack/argocd/full/run.sh
#
# Needs: bin/etcd and bin/kube-apiserver (make envtest-bins), kubectl, git,
# openssl, redis-server (installed from Debian when missing) and the argocd
# multi-call binary, built once from the Go module proxy into the cache when
# missing (minutes), or ARGOCD_BIN.
# Everything runs on free 127.0.0.1 ports in a temporary directory; every
# process it starts is stopped on exit (KEEP=1 keeps the directory and logs).
# It does not touch the project's local cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
ARGOCD_BIN="${ARGOCD_BIN:-${CACHE}/argocd-v2.14.21/argocd}"
ARGOCD_MOD="${ARGOCD_MOD:-$(go env GOMODCACHE)/github.com/argoproj/argo-cd/v2@v2.14.21}"
if [ ! -x "$ARGOCD_BIN" ]; then
  echo "run.sh: building Argo CD v2.14.21 (argocd multi-call binary) into ${ARGOCD_BIN}; this takes minutes" >&2
  (cd "$ROOT" && go mod download github.com/argoproj/argo-cd/v2@v2.14.21)
  mkdir -p "$(dirname "$ARGOCD_BIN")"
  (cd "$ARGOCD_MOD" && CGO_ENABLED=0 nice go build -trimpath -ldflags '-s -w -X github.com/argoproj/argo-cd/v2/common.version=2.14.21' -o "${ARGOCD_BIN}.tmp" ./cmd)
  mv "${ARGOCD_BIN}.tmp" "$ARGOCD_BIN"
fi
command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
DOCS="${ROOT}/docs/gitops.md"
SAMPLE="${ROOT}/config/samples/build_v1alpha1_multiarchbuild_minimal.yaml"
CRD="${ROOT}/config/crd/bases/build.multiarch.io_multiarchbuilds.yaml"
TIMEOUT="${TIMEOUT:-180}"
NS=build-multiarch
APP=multiarch-build
MAB=minimal

T0=$SECONDS
log() { printf '[%4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in kubectl git openssl redis-server "$ARGOCD_BIN" "${ROOT}/bin/etcd" "${ROOT}/bin/kube-apiserver"; do
  command -v "$tool" >/dev/null || die "missing $tool (see the header of $0)"
done
[ -d "${ARGOCD_MOD}/manifests/crds" ] || die "no Argo CD CRDs in ${ARGOCD_MOD} (go mod download github.com/argoproj/argo-cd/v2@v2.14.21)"

WORK="$(mktemp -d /tmp/mab-argocd-full.XXXXXX)"
PIDS=()
NAMES=()
cleanup() {
  local rc=$?
  # Newest first: the controller and repo server before redis, the API
  # server before etcd.
  local i t
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    t=$SECONDS
    kill "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
    log "stopped ${NAMES[i]} in $((SECONDS - t))s"
  done
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      echo "----- last lines of $(basename "$f")" >&2
      tail -n 15 "$f" >&2
    done
  fi
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "logs kept in ${WORK}"
  else
    rm -rf "$WORK"
  fi
  log "total run time $((SECONDS - T0))s (exit ${rc})"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log.
start() {
  local name=$1; shift
  "$@" >"${WORK}/${name}.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  log "started ${name} (pid $!)"
}

# freeport: a TCP port nothing listens on, outside the project cluster's.
USED_PORTS=" 16443 12379 "
freeport() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    [[ $USED_PORTS == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      echo "$p"
      return
    fi
  done
}

# waitfor DESC CMD...: retries CMD every second until it succeeds or TIMEOUT.
waitfor() {
  local desc=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for ${desc}"
    sleep 1
  done
}

ETCD_PORT=$(freeport); ETCD_PEER=$(freeport); API_PORT=$(freeport); REDIS_PORT=$(freeport)
REPO_PORT=$(freeport); REPO_METRICS=$(freeport); CTRL_METRICS=$(freeport)

# --- etcd + kube-apiserver ---------------------------------------------------
mkdir -p "${WORK}/etcd" "${WORK}/certs"
openssl genrsa -out "${WORK}/certs/sa.key" 2048 2>/dev/null
TOKEN="$(openssl rand -hex 16)"
echo "${TOKEN},admin,admin,system:masters" > "${WORK}/certs/tokens.csv"
start etcd "${ROOT}/bin/etcd" --data-dir "${WORK}/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls "http://127.0.0.1:${ETCD_PEER}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER}" \
  --initial-cluster "default=http://127.0.0.1:${ETCD_PEER}"
start kube-apiserver "${ROOT}/bin/kube-apiserver" --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
  --bind-address 127.0.0.1 --secure-port "${API_PORT}" --cert-dir "${WORK}/certs" \
  --token-auth-file "${WORK}/certs/tokens.csv" --authorization-mode RBAC \
  --service-account-key-file "${WORK}/certs/sa.key" --service-account-signing-key-file "${WORK}/certs/sa.key" \
  --service-account-issuer "https://127.0.0.1:${API_PORT}" --service-cluster-ip-range 10.0.0.0/24 \
  --disable-admission-plugins ServiceAccount --allow-privileged=true

export KUBECONFIG="${WORK}/kubeconfig"
cat > "$KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters:
- name: throwaway
  cluster: {server: "https://127.0.0.1:${API_PORT}", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "${TOKEN}"}
contexts:
- name: throwaway
  context: {cluster: throwaway, user: admin, namespace: argocd}
current-context: throwaway
KC
waitfor "kube-apiserver /readyz" kubectl get --raw /readyz
log "kube-apiserver ready on 127.0.0.1:${API_PORT} ($("${ROOT}/bin/kube-apiserver" --version))"

# --- CRDs, namespace argocd, settings ----------------------------------------
for f in application-crd.yaml appproject-crd.yaml applicationset-crd.yaml; do
  kubectl apply --server-side -f "${ARGOCD_MOD}/manifests/crds/${f}" >/dev/null
done
kubectl apply --server-side -f "$CRD" >/dev/null
kubectl wait --for condition=Established --timeout 60s \
  crd/applications.argoproj.io crd/appprojects.argoproj.io crd/multiarchbuilds.build.multiarch.io >/dev/null
log "CRDs established: Argo CD's and multiarchbuilds.build.multiarch.io"

kubectl create namespace argocd >/dev/null
# The one ```yaml block of the docs that holds the argocd-cm ConfigMap.
awk '
  /^```yaml$/ { inb = 1; buf = ""; next }
  /^```$/ && inb { if (buf ~ /(^|\n)kind: ConfigMap\n/ && buf ~ /\n  name: argocd-cm\n/) { printf "%s", buf; n++ } inb = 0; next }
  inb { buf = buf $0 "\n" }
  END { if (n != 1) { print "found " n " argocd-cm blocks" > "/dev/stderr"; exit 1 } }
' "$DOCS" > "${WORK}/argocd-cm.yaml" || die "no single argocd-cm ConfigMap in ${DOCS}"
kubectl apply -f "${WORK}/argocd-cm.yaml" >/dev/null
kubectl get cm argocd-cm -o jsonpath='{.data}' | grep -q 'resource.customizations.health.build.multiarch.io_MultiArchBuild' \
  || die "argocd-cm lacks the health key"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-secret, app.kubernetes.io/part-of: argocd}
stringData:
  server.secretkey: "$(openssl rand -hex 32)"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-rbac-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-rbac-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cmd-params-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-cmd-params-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: argocd
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
YAML
log "namespace argocd: argocd-cm from docs/gitops.md, argocd-secret, argocd-rbac-cm, argocd-cmd-params-cm, AppProject default"

# --- git repository with the sample ------------------------------------------
GITREPO="${WORK}/repo.git"
git init -q --bare "$GITREPO"
git clone -q "$GITREPO" "${WORK}/checkout" 2>/dev/null
mkdir -p "${WORK}/checkout/builds"
cp "$SAMPLE" "${WORK}/checkout/builds/minimal.yaml"
git -C "${WORK}/checkout" -c user.name=run.sh -c user.email=run.sh@localhost add builds
git -C "${WORK}/checkout" -c user.name=run.sh -c user.email=run.sh@localhost commit -q -m "MultiArchBuild minimal"
git -C "${WORK}/checkout" push -q origin HEAD:main 2>/dev/null
REPO_URL="file://${GITREPO}"
log "git repository ${REPO_URL} (branch main, path builds/)"

# --- redis, repo server, application controller --------------------------------
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no
waitfor "redis" bash -c "exec 3<>/dev/tcp/127.0.0.1/${REDIS_PORT}"

mkdir -p "${WORK}/argocd/ssh" "${WORK}/argocd/tls" "${WORK}/argocd/gnupg" "${WORK}/argocd/plugins" "${WORK}/bin"
ln -s "$ARGOCD_BIN" "${WORK}/bin/argocd-repo-server"
ln -s "$ARGOCD_BIN" "${WORK}/bin/argocd-application-controller"
export ARGOCD_SSH_DATA_PATH="${WORK}/argocd/ssh" ARGOCD_TLS_DATA_PATH="${WORK}/argocd/tls" \
  ARGOCD_GNUPGHOME="${WORK}/argocd/gnupg" ARGOCD_GPG_ENABLED=false \
  ARGOCD_PLUGINSOCKFILEPATH="${WORK}/argocd/plugins" ARGOCD_FAKE_IN_CLUSTER=true

start repo-server "${WORK}/bin/argocd-repo-server" --address 127.0.0.1 --port "$REPO_PORT" --disable-tls \
  --metrics-address 127.0.0.1 --metrics-port "$REPO_METRICS" --redis "127.0.0.1:${REDIS_PORT}" --loglevel info
waitfor "repo server" bash -c "exec 3<>/dev/tcp/127.0.0.1/${REPO_PORT}"
# ARGOCD_FAKE_IN_CLUSTER=true + KUBECONFIG: the in-cluster destination
# https://kubernetes.default.svc is this kubeconfig's API server.
start application-controller "${WORK}/bin/argocd-application-controller" --kubeconfig "$KUBECONFIG" --namespace argocd \
  --repo-server "127.0.0.1:${REPO_PORT}" --repo-server-plaintext --redis "127.0.0.1:${REDIS_PORT}" \
  --metrics-port "$CTRL_METRICS" --status-processors 2 --operation-processors 2 --loglevel info
log "argocd $("$ARGOCD_BIN" version --client --short 2>/dev/null | head -1 || true)"

# --- the Application ---------------------------------------------------------
kubectl apply -f - >/dev/null <<YAML
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: ${APP}
  namespace: argocd
spec:
  project: default
  source: {repoURL: "${REPO_URL}", targetRevision: main, path: builds}
  destination: {server: https://kubernetes.default.svc, namespace: ${NS}}
  syncPolicy:
    automated: {}
    syncOptions: [CreateNamespace=true]
YAML
TAPP=$SECONDS
log "Application ${APP} created (automated sync to namespace ${NS})"

# verdict: "<sync> <app health> | <resource health>: <resource message>"
verdict() {
  kubectl get application "$APP" -o jsonpath='{.status.sync.status} {.status.health.status} | {range .status.resources[?(@.kind=="MultiArchBuild")]}{.health.status}: {.health.message}{end}' 2>/dev/null
}

# expect WANT_APP_HEALTH WANT_MAB_HEALTH LABEL: waits until the Application is
# Synced, its health is WANT_APP_HEALTH and the MultiArchBuild's is WANT_MAB_HEALTH.
expect() {
  local app_h=$1 mab_h=$2 label=$3 t=$SECONDS v deadline=$((SECONDS + TIMEOUT))
  while :; do
    v="$(verdict || true)"
    if [[ $v == "Synced ${app_h} | ${mab_h}: "* ]]; then
      log "VERDICT ${label}: ${v}  (after $((SECONDS - t))s)"
      return
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for ${label} (Synced ${app_h} | ${mab_h}); last: '${v}'; conditions: $(kubectl get application "$APP" -o jsonpath='{.status.conditions}' 2>/dev/null)"
    sleep 1
  done
}

expect Progressing Progressing "synced, no status"
log "sync operation: $(kubectl get application "$APP" -o jsonpath='{.status.operationState.phase} ({.status.operationState.message}) at revision {.status.operationState.syncResult.revision}'), git main is $(git -C "${WORK}/checkout" rev-parse HEAD)"
GEN="$(kubectl get multiarchbuild "$MAB" -n "$NS" -o jsonpath='{.metadata.generation}')"
log "MultiArchBuild ${NS}/${MAB} exists, generation ${GEN}, tracked by Argo CD: $(kubectl get multiarchbuild "$MAB" -n "$NS" -o jsonpath='{.metadata.labels.app\.kubernetes\.io/instance}')"

NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
DIGEST="sha256:3b5f4a2cbd1e0f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
IMAGE="quay.io/example/htop-multiarch@${DIGEST}"
kubectl patch multiarchbuild "$MAB" -n "$NS" --subresource status --type merge -p "$(cat <<JSON
{"status": {"observedGeneration": ${GEN}, "phase": "Succeeded", "image": "${IMAGE}", "digest": "${DIGEST}",
  "conditions": [
    {"type": "Ready", "status": "True", "reason": "Built", "message": "Generation ${GEN} built and pushed", "observedGeneration": ${GEN}, "lastTransitionTime": "${NOW}"},
    {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "All Tasks have completed executing", "observedGeneration": ${GEN}, "lastTransitionTime": "${NOW}"}]}}
JSON
)" >/dev/null
log "patched status: succeeded build of generation ${GEN}"
expect Healthy Healthy "succeeded build"

kubectl patch multiarchbuild "$MAB" -n "$NS" --subresource status --type merge -p "$(cat <<JSON
{"status": {"observedGeneration": ${GEN}, "phase": "Failed", "image": null, "digest": null,
  "conditions": [
    {"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "The build of generation ${GEN} failed", "observedGeneration": ${GEN}, "lastTransitionTime": "${NOW}"},
    {"type": "Succeeded", "status": "False", "reason": "PipelineRunTimeout", "message": "PipelineRun minimal-${GEN}-0a1b failed to finish within \"1h0m0s\"", "observedGeneration": ${GEN}, "lastTransitionTime": "${NOW}"}]}}
JSON
)" >/dev/null
log "patched status: failed build of generation ${GEN}"
expect Degraded Degraded "failed build"

log "OK: Argo CD's application controller synced ${APP} in $((SECONDS - TAPP))s of Application life and judged the MultiArchBuild with the docs' health check"
