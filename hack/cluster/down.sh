#!/usr/bin/env bash
# Stops the local cluster by PID (only processes that up.sh started, and the
# containers their containerd shims run). State and caches are kept, so the
# next up.sh is a warm start. MAB_WIPE=1 also deletes the state directory.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


# the operator and demo helpers started by make demo / the e2e test, if any
for p in "${PIDS}"/operator*.pid; do [ -f "$p" ] && stop "$(basename "$p" .pid)"; done
stop machinesim
"${ROOT}/hack/cluster/chains.sh" stop   # and the finalizers it leaves
stop tekton-controller
stop pv-recycler 2
for n in "${NODES[@]}"; do stop "kubelet-${n}"; done

# Containers: kill every process in the nodes' cgroup roots, then the
# containerd shims of these containerd instances (identified by their socket).
for n in "${NODES[@]}"; do
  for procs in $(find /sys/fs/cgroup/pids/mab-${n} /sys/fs/cgroup/memory/mab-${n} /sys/fs/cgroup/mab-${n} -name cgroup.procs 2>/dev/null); do
    xargs -r kill -KILL < "$procs" 2>/dev/null
  done
  sock="${RUN}/${n}/containerd.sock"
  for d in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -q -- "containerd-shim-runc-v2 .*-address ${sock} " && kill -KILL "${d#/proc/}" 2>/dev/null
  done
  stop "containerd-${n}"
done
stop git-daemon 2
stop registry
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver 15
stop etcd

# unmount what kubelets and containerd left (pod volumes, sandboxes, rootfs)
awk '{print $2}' /proc/mounts | grep -E "^(${STATE}/nodes|${RUN})/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
ip addr del "${SERVICE_IP}/32" dev lo 2>/dev/null
if [ "${MAB_WIPE:-0}" = 1 ]; then
  rm -rf "${STATE}" "${RUN}"
  log "wiped ${STATE}"
fi
log "cluster stopped"
