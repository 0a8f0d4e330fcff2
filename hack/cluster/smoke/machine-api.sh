#!/usr/bin/env bash
# Proves the local Machine API (hack/machinesim) on the real local cluster,
# without the operator: an arm64 MachineSet cloned by hand from the worker
# (arm64 AMI from coreos-bootimages, m6g.xlarge), scaled to 1 -> Machine
# Running, an arm64 Node Ready with the Machine's providerID, a pod running
# arm64 binaries on it; scaled to 0 -> the pod evicted, Node gone, Machine
# deleted; then the machine-sim ConfigMap's failures: unsupported (Machine
# Failed, InvalidConfiguration), insufficientCapacity (stays Provisioning,
# CreateError text in the MachineCreation condition), noNode (Provisioned).
# Switches the cluster to MAB_ARM64_NODE=machine for the run and back after.
#   hack/cluster/smoke/machine-api.sh       # exits non-zero on failure, prints timings
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
NS=openshift-machine-api
prev=$(sed -n 's/^export MAB_ARM64_NODE=//p' "${STATE}/env" 2>/dev/null || true)
fail() { log "FAIL: $*"; kc -n "$NS" get machinesets,machines -o wide >&2 || true; kc get nodes -L kubernetes.io/arch >&2 || true; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fs", b - a}'; }
# until SECONDS DESCRIPTION CMD...: polls CMD (0.5 s) until it succeeds
until_ok() {
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "timed out after ${secs}s: ${what}"
}

if [ "$prev" != machine ]; then
  log "switching the cluster to MAB_ARM64_NODE=machine"
  t=$(now); MAB_ARM64_NODE=machine "${ROOT}/hack/cluster/up.sh" >/dev/null 2>"${LOGS}/smoke-machine-api-up.log" || fail "up.sh (see ${LOGS}/smoke-machine-api-up.log)"
  log "switched in $(secs "$t" "$(now)")"
fi
restore() {
  kc -n "$NS" delete machineset "$MS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kc -n "$NS" delete configmap machine-sim --ignore-not-found >/dev/null 2>&1 || true
  kc delete namespace mab-smoke-machine --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if [ "${prev:-static}" != machine ]; then
    # wait for the Machines to go (the slot is freed) before the static node comes back
    for _ in $(seq 60); do [ -z "$(kc -n "$NS" get machines -l "machine.openshift.io/cluster-api-machineset=${MS}" -o name 2>/dev/null)" ] && break; sleep 1; done
    log "switching the cluster back to MAB_ARM64_NODE=${prev:-static}"
    MAB_ARM64_NODE="${prev:-static}" "${ROOT}/hack/cluster/up.sh" >/dev/null 2>>"${LOGS}/smoke-machine-api-up.log" || log "up.sh back to ${prev:-static} failed"
  fi
}

infra=$(kc get infrastructure cluster -o jsonpath='{.status.infrastructureName}')
region=$(kc get infrastructure cluster -o jsonpath='{.status.platformStatus.aws.region}')
[ -n "$infra" ] && [ -n "$region" ] || fail "no Infrastructure/cluster"
[ "$(kc get clusterversion version -o jsonpath='{.status.desired.architecture}')" = Multi ] || fail "ClusterVersion is not a multi-arch payload"
worker=$(kc -n "$NS" get machinesets -l "machine.openshift.io/cluster-api-cluster=${infra}" -o name | head -1)
[ -n "$worker" ] || fail "no worker MachineSet"
ami=$(kc -n openshift-machine-config-operator get configmap coreos-bootimages -o jsonpath='{.data.stream}' |
  jq -r --arg r "$region" '.architectures.aarch64.images.aws.regions[$r].image')
zone=$(kc -n "$NS" get "$worker" -o jsonpath='{.spec.template.spec.providerSpec.value.placement.availabilityZone}')
MS="${infra}-arm64-smoke-${zone}"
trap restore EXIT
kc get nodes -l kubernetes.io/arch=arm64 -o name | grep -q . && fail "an arm64 node exists before any arm64 Machine"

log "MachineSet ${MS}: clone of ${worker#*/}, m6g.xlarge, ${ami}"
kc -n "$NS" get "$worker" -o json | jq --arg n "$MS" --arg ami "$ami" '
  del(.metadata.uid, .metadata.resourceVersion, .metadata.creationTimestamp, .metadata.generation, .metadata.managedFields, .status)
  | .metadata.name = $n
  | .metadata.annotations = {"capacity.cluster-autoscaler.kubernetes.io/labels": "kubernetes.io/arch=arm64"}
  | .spec.replicas = 0
  | .spec.selector.matchLabels["machine.openshift.io/cluster-api-machineset"] = $n
  | .spec.template.metadata.labels["machine.openshift.io/cluster-api-machineset"] = $n
  | .spec.template.spec.providerSpec.value.ami.id = $ami
  | .spec.template.spec.providerSpec.value.instanceType = "m6g.xlarge"' | kc apply -f - >/dev/null
kc -n "$NS" create configmap machine-sim --from-literal=bootDelay=5s --dry-run=client -o yaml | kc apply -f - >/dev/null

machine() { kc -n "$NS" get machines -l "machine.openshift.io/cluster-api-machineset=${MS}" -o jsonpath='{.items[0].metadata.name}'; }
mfield() { kc -n "$NS" get machine "$1" -o jsonpath="$2"; }
phase_is() { [ "$(mfield "$1" '{.status.phase}')" = "$2" ]; }
machines_gone() { [ -z "$(kc -n "$NS" get machines -l "machine.openshift.io/cluster-api-machineset=${MS}" -o name)" ]; }

# ---------------------------------------------------------------- scale up
t_scale=$(now)
kc -n "$NS" scale machineset "$MS" --replicas=1 >/dev/null
until_ok 30 "a Machine of ${MS}" machine
m=$(machine)
until_ok 120 "Machine ${m} Running" phase_is "$m" Running
t_running=$(now)
node=$(mfield "$m" '{.status.nodeRef.name}')
until_ok 60 "node ${node} Ready" kc wait --for=condition=Ready "node/${node}" --timeout=1s
t_ready=$(now)
arch=$(kc get node "$node" -o jsonpath='{.metadata.labels.kubernetes\.io/arch}')
pid=$(kc get node "$node" -o jsonpath='{.spec.providerID}')
ann=$(kc get node "$node" -o jsonpath='{.metadata.annotations.machine\.openshift\.io/machine}')
mpid=$(mfield "$m" '{.spec.providerID}')
iid=$(mfield "$m" '{.status.providerStatus.instanceId}')
[ "$arch" = arm64 ] || fail "node ${node}: kubernetes.io/arch=${arch}, want arm64"
[ "$pid" = "$mpid" ] && [ "$pid" = "aws:///${zone}/${iid}" ] || fail "providerID: node ${pid}, Machine ${mpid}, instance ${iid}"
[ "$ann" = "${NS}/${m}" ] || fail "node annotation machine.openshift.io/machine=${ann}"
[ "$(mfield "$m" '{.metadata.annotations.machine\.openshift\.io/instance-state}')" = running ] || fail "instance-state annotation"
[ "$(mfield "$m" '{.metadata.ownerReferences[0].name}')" = "$MS" ] || fail "Machine owner"
log "Machine ${m} Running: node ${node} (arch ${arch}, providerID ${pid})"

# a pod on the new node runs arm64 binaries (qemu-user), and keeps running until drained
source "${STATE}/env"
kc create namespace mab-smoke-machine --dry-run=client -o yaml | kc apply -f - >/dev/null
kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: on-arm64, namespace: mab-smoke-machine}
spec:
  nodeSelector: {kubernetes.io/arch: arm64}
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "${MAB_BASE_IMAGE}", imagePullPolicy: IfNotPresent, command: [sh, -c, "uname -m; sleep 3600"]}
YAML
until_ok 90 "pod on-arm64 Running" kc -n mab-smoke-machine wait --for=condition=Ready pod/on-arm64 --timeout=1s
t_pod=$(now)
[ "$(kc -n mab-smoke-machine get pod on-arm64 -o jsonpath='{.spec.nodeName}')" = "$node" ] || fail "pod not on ${node}"
um=$(kc -n mab-smoke-machine logs on-arm64 | head -1)
[ "$um" = aarch64 ] || fail "uname -m on ${node}: ${um}"
log "pod on ${node}: uname -m = ${um}"

# ---------------------------------------------------------------- scale down
t_down=$(now)
kc -n "$NS" scale machineset "$MS" --replicas=0 >/dev/null
node_gone() { ! kc get node "$node" >/dev/null 2>&1; }
pod_gone() { ! kc -n mab-smoke-machine get pod on-arm64 >/dev/null 2>&1; }
until_ok 150 "node ${node} gone" node_gone
t_nodegone=$(now)
pod_gone || fail "pod on-arm64 still exists after its node went (not drained)"
until_ok 60 "Machine ${m} deleted" machines_gone
t_mgone=$(now)
[ -z "$("${ROOT}/hack/cluster/node.sh" name arm64)" ] || fail "the arm64 slot's kubelet still runs"
log "scaled to 0: pod evicted, node ${node} gone, Machine ${m} deleted"

# ---------------------------------------------------------------- failures
fail_case() { # KEY WANT-PHASE CHECK...
  local key=$1 want=$2
  kc -n "$NS" create configmap machine-sim --from-literal=bootDelay=5s --from-literal="${key}=m6g.xlarge@${zone}" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc -n "$NS" scale machineset "$MS" --replicas=1 >/dev/null
  until_ok 30 "a Machine of ${MS}" machine
  fm=$(machine)
  until_ok 60 "Machine ${fm} ${want}" phase_is "$fm" "$want"
}
fail_case unsupported Failed
reason=$(mfield "$fm" '{.status.errorReason}'); msg=$(mfield "$fm" '{.status.errorMessage}')
[ "$reason" = InvalidConfiguration ] || fail "errorReason ${reason}"
case "$msg" in "error launching instance: Your requested instance type (m6g.xlarge) is not supported in your requested Availability Zone (${zone})."*) ;; *) fail "errorMessage ${msg}" ;; esac
[ "$(mfield "$fm" '{.metadata.annotations.machine\.openshift\.io/instance-state}')" = unknown ] || fail "instance-state of a Failed Machine"
log "unsupported: Machine ${fm} Failed, errorReason ${reason}, errorMessage: ${msg}"
kc -n "$NS" scale machineset "$MS" --replicas=0 >/dev/null
until_ok 30 "Failed Machine deleted" machines_gone

fail_case insufficientCapacity Provisioning
sleep 2
cond=$(mfield "$fm" '{.status.providerStatus.conditions[?(@.type=="MachineCreation")].reason}: {.status.providerStatus.conditions[?(@.type=="MachineCreation")].message}')
case "$cond" in "MachineCreationFailed: error creating EC2 instance: InsufficientInstanceCapacity: We currently do not have sufficient m6g.xlarge capacity"*) ;; *) fail "MachineCreation condition: ${cond}" ;; esac
[ -z "$(mfield "$fm" '{.status.errorReason}')" ] || fail "errorReason set on a retried CreateError"
log "insufficientCapacity: Machine ${fm} stays Provisioning; ${cond%%$'\n'*}"
kc -n "$NS" scale machineset "$MS" --replicas=0 >/dev/null
until_ok 30 "Provisioning Machine deleted" machines_gone

fail_case noNode Provisioned
sleep 8   # more than bootDelay: still no node
phase_is "$fm" Provisioned && [ -z "$(mfield "$fm" '{.status.nodeRef.name}')" ] || fail "noNode Machine got a node"
kc get nodes -l kubernetes.io/arch=arm64 -o name | grep -q . && fail "an arm64 node registered for a noNode Machine"
log "noNode: Machine ${fm} Provisioned, no node 8s after launch (bootDelay 5s)"
kc -n "$NS" scale machineset "$MS" --replicas=0 >/dev/null
until_ok 30 "Provisioned Machine deleted" machines_gone

echo "PASS machine-api smoke"
echo "  scale 0->1 -> Machine Running:  $(secs "$t_scale" "$t_running") (bootDelay 5s)"
echo "  scale 0->1 -> Node Ready:       $(secs "$t_scale" "$t_ready")"
echo "  Node Ready -> arm64 pod Ready:  $(secs "$t_ready" "$t_pod")"
echo "  scale 1->0 -> Node gone:        $(secs "$t_down" "$t_nodegone") (drain included)"
echo "  scale 1->0 -> Machine deleted:  $(secs "$t_down" "$t_mgone")"
