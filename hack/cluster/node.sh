#!/usr/bin/env bash
# Starts or stops the kubelet of one node slot of the local cluster. A slot
# (amd64, arm64: NODES in lib.sh) is a containerd that up.sh keeps running with
# the images preloaded, its cgroup root, CNI bridge and kubelet ports; this
# script only writes the kubelet's configuration and starts or stops the
# kubelet, so the same slot can be a static node (up.sh: mab-amd64, mab-arm64)
# or a node "booted" by the local machine controller (hack/machinesim).
#
#   node.sh start SLOT [--name NODE] [--provider-id aws:///ZONE/ID] [--labels k=v,...]
#   node.sh stop SLOT [--drain] [--delete]   # drain the Node first / delete it after
#   node.sh name SLOT                        # the node name the running kubelet uses, or nothing
#
# start returns once the kubelet runs (it does not wait for the Node to
# register). Starting a slot whose kubelet runs under another name fails
# (exit 3): stop it first. The kubelet's kubernetes.io/arch comes from the
# mab.local/arch=SLOT label (the MutatingAdmissionPolicy in up.sh), whatever
# the node's name.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:-}; slot=${2:-}
[ -n "$cmd" ] && [ -n "$slot" ] || die "usage: node.sh start|stop|name SLOT [options]"
[ -n "${NODE_PORT[$slot]:-}" ] || die "unknown slot ${slot} (slots: ${NODES[*]})"
shift 2
nd="${STATE}/nodes/${slot}"
name_file="${nd}/node-name"
running_name() { pid_alive "kubelet-${slot}" && { cat "$name_file" 2>/dev/null || node_name "$slot"; } || true; }

case "$cmd" in
name)
  running_name
  ;;
start)
  name=$(node_name "$slot"); provider_id=""; labels=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name=$2; shift 2 ;;
      --provider-id) provider_id=$2; shift 2 ;;
      --labels) labels=$2; shift 2 ;;
      *) die "node.sh start: unknown option $1" ;;
    esac
  done
  cur=$(running_name)
  if pid_alive "kubelet-${slot}"; then
    [ "$cur" = "$name" ] && exit 0
    log "slot ${slot} runs node ${cur:-<unknown>}, not ${name}"
    exit 3
  fi
  mkdir -p "${nd}/kubelet" "${nd}/pod-logs"
  cat > "${nd}/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: ${NODE_PORT[$slot]}
healthzPort: ${NODE_HEALTHZ[$slot]}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /mab-${slot}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${RUN}/${slot}/containerd.sock
podLogsDir: ${nd}/pod-logs
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 60
nodeStatusUpdateFrequency: 5s
${provider_id:+providerID: ${provider_id}}
YAML
  echo "$name" > "$name_file"
  start "kubelet-${slot}" "${KUBE_BIN}/kubelet" --config "${nd}/kubelet.yaml" --kubeconfig "${KUBECONFIG_FILE}" \
    --root-dir "${nd}/kubelet" --cert-dir "${nd}/kubelet/pki" --hostname-override "$name" --node-ip "${HOST_IP}" \
    --node-labels "mab.local/arch=${slot}${labels:+,${labels}}"
  ;;
stop)
  drain=0; delete=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --drain) drain=1; shift ;;
      --delete) delete=1; shift ;;
      *) die "node.sh stop: unknown option $1" ;;
    esac
  done
  name=$(cat "$name_file" 2>/dev/null || true)
  if [ "$drain" = 1 ] && [ -n "$name" ] && pid_alive "kubelet-${slot}" && kc get node "$name" >/dev/null 2>&1; then
    kc drain "$name" --ignore-daemonsets --delete-emptydir-data --force --timeout=120s >/dev/null 2>&1 ||
      log "drain of ${name} incomplete; stopping its kubelet anyway"
  fi
  stop "kubelet-${slot}"
  # what the kubelet did not stop (no drain, or a drain that timed out): the
  # processes of the slot's pods. Their sandboxes are removed by the next
  # kubelet of the slot, which finds them without a pod.
  for procs in $(find "/sys/fs/cgroup/pids/mab-${slot}" "/sys/fs/cgroup/memory/mab-${slot}" "/sys/fs/cgroup/mab-${slot}" -name cgroup.procs 2>/dev/null); do
    xargs -r kill -KILL < "$procs" 2>/dev/null || true
  done
  if [ "$delete" = 1 ] && [ -n "$name" ]; then
    kc delete node "$name" --ignore-not-found --wait=false >/dev/null
    log "deleted node ${name}"
  fi
  rm -f "$name_file"
  ;;
*) die "usage: node.sh start|stop|name SLOT [options]" ;;
esac
