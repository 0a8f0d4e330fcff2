# Shared settings of the local cluster scripts (sourced, not run).
# Every value can be overridden from the environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
STATE="${MAB_STATE:-/var/tmp/mab-cluster}"     # persistent state (etcd, images, volumes, git)
RUN="${MAB_RUN:-/run/mab-cluster}"             # sockets and runtime state
LOGS="${MAB_LOGS:-${STATE}/logs}"
PIDS="${STATE}/pids"
KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
TEKTON_VERSION="${TEKTON_VERSION:-v1.12.0}"
KUBE_BIN="${CACHE}/kube-${KUBE_VERSION}"
ETCD_BIN="${CACHE}/etcd-${ETCD_VERSION}"
TEKTON_BIN="${CACHE}/tekton-${TEKTON_VERSION}"
# Tekton Chains and cosign: only for MAB_CHAINS=1 (chains.sh, build-chains.sh).
CHAINS_VERSION="${CHAINS_VERSION:-v0.26.2}"
COSIGN_VERSION="${COSIGN_VERSION:-v2.6.2}"
CHAINS_BIN="${CACHE}/chains-${CHAINS_VERSION}"
COSIGN="${CACHE}/cosign-${COSIGN_VERSION}/cosign"
IMAGES_DIR="${CACHE}/images-v1"
IMAGES_MAVEN_DIR="${CACHE}/images-maven-v1"   # maven and jre: their own cache key

HOST_IP="${MAB_HOST_IP:-$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')}"
ETCD_PORT="${MAB_ETCD_PORT:-12379}"
API_PORT="${MAB_API_PORT:-16443}"
KCM_PORT="${MAB_KCM_PORT:-10357}"
SCHED_PORT="${MAB_SCHED_PORT:-10359}"
REGISTRY_PORT="${MAB_REGISTRY_PORT:-5770}"
GIT_PORT="${MAB_GIT_PORT:-9419}"
TEKTON_PROBES_PORT="${MAB_TEKTON_PROBES_PORT:-18081}"
CHAINS_METRICS_PORT="${MAB_CHAINS_METRICS_PORT:-18095}"   # and +1: profiling (18091 is the local operator's probes)
# The registry and the git server listen on all addresses. Pods have their own
# network namespace (127.0.0.1 there is the pod), so image references and git
# URLs use SERVICE_IP, an address up.sh adds to the host's loopback device:
# the same on every machine (unlike eth0's), so it can be baked into the
# builder image's registries.conf (plain HTTP registry), and reachable from
# pods through the CNI bridge's gateway.
SERVICE_IP="${MAB_SERVICE_IP:-10.88.255.1}"
REGISTRY="${SERVICE_IP}:${REGISTRY_PORT}"
GIT_BASE="git://${SERVICE_IP}:${GIT_PORT}"
KUBECONFIG_FILE="${STATE}/kubeconfig"
# The first address of --service-cluster-ip-range: the "kubernetes" Service.
KUBE_SERVICE_IP="10.96.0.1"
# Admission plugins OpenShift enables that kube-apiserver does not by default
# (added to the defaults; see docs/openshift-fidelity.md).
OPENSHIFT_ADMISSION_PLUGINS="OwnerReferencesPermissionEnforcement"
STORAGE_CLASS="mab-local"

# Nodes: name, kubernetes.io/arch, kubelet port, healthz port, CNI bridge, subnet.
NODES=(amd64 arm64)
declare -A NODE_PORT=([amd64]=10250 [arm64]=10260)
declare -A NODE_HEALTHZ=([amd64]=10248 [arm64]=10258)
declare -A NODE_BRIDGE=([amd64]=mab0 [arm64]=mab1)
declare -A NODE_SUBNET=([amd64]=10.88.0.0/24 [arm64]=10.88.1.0/24)
node_name() { echo "mab-$1"; }

# Image references (tags from hack/images/build-images.sh).
declare -A IMG_TAG=()
for f in "${IMAGES_DIR}/tags" "${IMAGES_MAVEN_DIR}/tags"; do
  [ -f "$f" ] || continue
  while IFS== read -r k v; do IMG_TAG[$k]=$v; done < "$f"
done
img() { echo "${REGISTRY}/mab/$1:${IMG_TAG[$1]}"; }
# The step and base images pushed to the registry and loaded into the nodes.
STEP_IMAGES=(base git buildah nodejs maven jre)
# img_archive NAME ARCH: the docker-archive of NAME for ARCH.
img_archive() {
  local d="${IMAGES_DIR}"; case "$1" in maven | jre) d="${IMAGES_MAVEN_DIR}" ;; esac
  echo "${d}/$1-${IMG_TAG[$1]}-$2.tar"
}
PAUSE_IMAGE="mab-local/pause:3.10"
TEKTON_IMG_PREFIX="mab-local/tekton"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# kubectl: the installed one, else the one hack/build-kube.sh builds (up.sh builds it when needed).
KUBECTL="$(command -v kubectl || echo "${KUBE_BIN}/kubectl")"
kc() { "$KUBECTL" --kubeconfig "${KUBECONFIG_FILE}" "$@"; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
pid_alive() { local f="${PIDS}/$1.pid"; [ -f "$f" ] && alive "$(cat "$f")"; }

# start NAME CMD...: runs CMD in its own session, log in $LOGS/NAME.log, PID in $PIDS/NAME.pid.
start() {
  local name=$1; shift
  if pid_alive "$name"; then return 0; fi
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" >>"${LOGS}/${name}.log" 2>&1 < /dev/null &
  echo $! > "${PIDS}/${name}.pid"
  log "started ${name} (pid $!), log ${LOGS}/${name}.log"
}

# stop NAME [SECONDS]: TERM, then KILL after SECONDS (10), the process in $PIDS/NAME.pid.
stop() { # NAME [SECONDS]
  local f="${PIDS}/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < ${2:-10} * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && { kill -KILL "$pid" 2>/dev/null; sleep 0.2; }
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for DESCRIPTION SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for ${what}"
}
