#!/usr/bin/env bash
# Starts the local cluster (idempotent: what runs already is kept, what is
# built already is reused). Builds what is missing into the cache first.
#
#   hack/cluster/up.sh        # then: hack/cluster/kubectl.sh get nodes
#   hack/cluster/down.sh      # stops everything by PID
#
# On 127.0.0.1 / the eth0 address: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, Tekton's controller (out of cluster; with MAB_CHAINS=1 also
# Tekton Chains', chains.sh), a docker-registry and a
# git daemon (reached by pods at SERVICE_IP, see lib.sh), and two real nodes:
# containerd + kubelet "mab-amd64" and "mab-arm64" (arm64 binaries run through
# qemu-user binfmt), and OpenShift's Machine API on AWS (cloud.sh,
# hack/machinesim). MAB_ARM64_NODE=machine: no static arm64 node; one appears
# when a Machine of an arm64 MachineSet runs (see README.md, "Machine API"). State: ${STATE} (/var/tmp/mab-cluster); logs: ${STATE}/logs.
# Writes ${STATE}/env (KUBECONFIG, REGISTRY, GIT_BASE, images) for tests and demo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (containerd and kubelet need it)"
[ -n "$HOST_IP" ] || die "cannot find the eth0 IPv4 address; set MAB_HOST_IP"
T0=$(date +%s)
ARM64_MODE="${MAB_ARM64_NODE:-static}"
case "$ARM64_MODE" in static|machine) ;; *) die "MAB_ARM64_NODE=${ARM64_MODE}: want static or machine" ;; esac

# ---------------------------------------------------------------- builds
"${ROOT}/hack/cluster/build.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # image tags
T_BUILD=$(date +%s)

mkdir -p "$STATE" "$RUN" "$LOGS" "$PIDS" "${STATE}/pki" "${STATE}/git" "${STATE}/registry" "${STATE}/pv"

# ---------------------------------------------------------------- credentials
PKI="${STATE}/pki"
if [ ! -f "${PKI}/sa.key" ]; then
  openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  echo "$(openssl rand -hex 16),admin,admin,system:masters" > "${PKI}/tokens.csv"
fi
TOKEN="$(cut -d, -f1 "${PKI}/tokens.csv")"
cat > "${KUBECONFIG_FILE}" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mab
  cluster: {server: "https://127.0.0.1:${API_PORT}", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "${TOKEN}"}
contexts:
- name: mab
  context: {cluster: mab, user: admin, namespace: default}
current-context: mab
KC

# ---------------------------------------------------------------- etcd + control plane
start etcd "${ETCD_BIN}/etcd" --name mab --data-dir "${STATE}/etcd" \
  --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "mab=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync --quota-backend-bytes 4294967296
wait_for etcd 30 curl -fsS "http://127.0.0.1:${ETCD_PORT}/health"

# Audit: every request of the in-cluster operator's ServiceAccount (metadata
# only), so the e2e tier can check that the installed RBAC refused none of them
# and which verbs it used.
cat > "${STATE}/audit-policy.yaml" <<YAML
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:multiarch-build-system:multiarch-build-controller-manager",
          "system:serviceaccount:${MAB_OLM_NAMESPACE:-openshift-operators}:multiarch-build-controller-manager"]
- level: None
YAML
start kube-apiserver "${KUBE_BIN}/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:${ETCD_PORT}" --secure-port "${API_PORT}" --bind-address 0.0.0.0 \
  --advertise-address "${HOST_IP}" --cert-dir "${PKI}/apiserver" \
  --service-cluster-ip-range 10.96.0.0/16 --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
  --token-auth-file "${PKI}/tokens.csv" --authorization-mode RBAC --allow-privileged=true \
  --kubelet-preferred-address-types InternalIP --enable-priority-and-fairness=false \
  --feature-gates MutatingAdmissionPolicy=true --runtime-config admissionregistration.k8s.io/v1beta1=true \
  --enable-admission-plugins "${OPENSHIFT_ADMISSION_PLUGINS}" \
  --audit-policy-file "${STATE}/audit-policy.yaml" --audit-log-path "${LOGS}/audit.log" --audit-log-maxsize 200 --audit-log-maxbackup 1
wait_for kube-apiserver 60 kc get --raw /readyz

start kube-controller-manager "${KUBE_BIN}/kube-controller-manager" \
  --kubeconfig "${KUBECONFIG_FILE}" --authentication-kubeconfig "${KUBECONFIG_FILE}" --authorization-kubeconfig "${KUBECONFIG_FILE}" \
  --secure-port "${KCM_PORT}" --leader-elect=false \
  --service-account-private-key-file "${PKI}/sa.key" --root-ca-file "${PKI}/apiserver/apiserver.crt" \
  --use-service-account-credentials=false --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route' \
  --node-monitor-grace-period 20s
start kube-scheduler "${KUBE_BIN}/kube-scheduler" \
  --kubeconfig "${KUBECONFIG_FILE}" --authentication-kubeconfig "${KUBECONFIG_FILE}" --authorization-kubeconfig "${KUBECONFIG_FILE}" \
  --secure-port "${SCHED_PORT}" --leader-elect=false

# ---------------------------------------------------------------- registry + git
cat > "${STATE}/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: "${STATE}/registry"}
  delete: {enabled: true}
http: {addr: "0.0.0.0:${REGISTRY_PORT}"}
YML
start registry /usr/bin/docker-registry serve "${STATE}/registry.yml"
start git-daemon git daemon --reuseaddr --base-path="${STATE}/git" --export-all --enable=receive-pack \
  --listen=0.0.0.0 --port="${GIT_PORT}" "${STATE}/git"
wait_for registry 30 curl -fsS "http://127.0.0.1:${REGISTRY_PORT}/v2/"

# ---------------------------------------------------------------- nodes
# A mode switch: the machine controller of the other mode must not restart
# a kubelet while the slots change hands (cloud.sh starts it again).
if [ "$(cat "${STATE}/arm64-node-mode" 2>/dev/null || echo static)" != "$ARM64_MODE" ]; then
  stop machinesim
fi
echo "$ARM64_MODE" > "${STATE}/arm64-node-mode"
ip -4 addr show dev lo | grep -q " ${SERVICE_IP}/32 " || ip addr add "${SERVICE_IP}/32" dev lo
# The "kubernetes" Service for pods (the in-cluster operator's rest.InClusterConfig):
# what kube-proxy would do for this one ClusterIP, a DNAT to the API server.
# Its self-signed serving certificate names the ClusterIP.
dnat=(-d "${KUBE_SERVICE_IP}/32" -p tcp --dport 443 -j DNAT --to-destination "${HOST_IP}:${API_PORT}" -m comment --comment mab-kubernetes-service)
iptables -t nat -C PREROUTING "${dnat[@]}" 2>/dev/null || iptables -t nat -A PREROUTING "${dnat[@]}"
sysctl -qw net.ipv4.ip_forward=1
modprobe br_netfilter 2>/dev/null || true
for n in "${NODES[@]}"; do
  name=$(node_name "$n"); nd="${STATE}/nodes/${n}"; rd="${RUN}/${n}"
  mkdir -p "${nd}/cni" "${nd}/certs.d/${REGISTRY}" "${nd}/kubelet" "${nd}/pod-logs" "$rd"
  # containerd: own socket, root, state; cgroupfs; local sandbox image; the
  # local registry over plain HTTP.
  cat > "${nd}/containerd.toml" <<TOML
version = 2
root = "${nd}/containerd"
state = "${rd}/containerd"
[grpc]
  address = "${rd}/containerd.sock"
[ttrpc]
  address = "${rd}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${nd}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${nd}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${nd}/certs.d"
TOML
  cat > "${nd}/certs.d/${REGISTRY}/hosts.toml" <<TOML
server = "http://${REGISTRY}"
[host."http://${REGISTRY}"]
  capabilities = ["pull", "resolve"]
TOML
  # CNI: a bridge per node with masquerade, so pods reach the host and the internet.
  cat > "${nd}/cni/10-mab.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "mab-${n}", "plugins": [
  {"type": "bridge", "bridge": "${NODE_BRIDGE[$n]}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "${NODE_SUBNET[$n]}"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "${nd}/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
  start "containerd-${n}" /usr/bin/containerd --config "${nd}/containerd.toml"
done
for n in "${NODES[@]}"; do
  wait_for "containerd-${n}" 30 ctr -a "${RUN}/${n}/containerd.sock" version
done

# images: every node gets the pause and Tekton images, and the step images
# under the same names as in the registry. A real arm64 node would run the
# arm64 variant of every multi-arch image. Here the arm64 node gets the arm64
# variant of git, nodejs and base (they run through qemu-user), and the amd64
# variant of buildah: buildah starts namespaces/chroots, which qemu-user cannot
# emulate; only its TARGET platform (--platform linux/arm64) matters.
"${ROOT}/hack/cluster/load-images.sh"

# cgroup roots of the two kubelets: cgroup v1 (this machine) has one per
# hierarchy; on a cgroup v2 host it is one directory (untested here).
for n in "${NODES[@]}"; do
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup/mab-${n}"
  else
    for h in /sys/fs/cgroup/*/; do
      case "$h" in */unified/) continue ;; esac
      mkdir -p "${h}mab-${n}" 2>/dev/null || true
    done
  fi
done

# The kubelet sets kubernetes.io/arch to its own runtime.GOARCH, on registration
# and again on every node status update (kubelet_node_status.go updateNode);
# --node-labels cannot set it and a one-off `kubectl label` is reverted within
# seconds. A MutatingAdmissionPolicy (beta, enabled above) sets it from the
# node's mab.local/arch label on every write of the Node, including the
# kubelet's own status patches.
kc apply -f - >/dev/null <<'YAML'
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: mab-node-arch}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [nodes, nodes/status]
  matchConditions:
  - name: has-arch-label
    expression: "has(object.metadata.labels) && 'mab.local/arch' in object.metadata.labels"
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{metadata: Object.metadata{labels: {
          "kubernetes.io/arch": object.metadata.labels["mab.local/arch"],
          "beta.kubernetes.io/arch": object.metadata.labels["mab.local/arch"]}}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: mab-node-arch}
spec:
  policyName: mab-node-arch
YAML
# Kubelets (hack/cluster/node.sh). MAB_ARM64_NODE=static (default): both slots
# run static nodes mab-amd64 and mab-arm64. MAB_ARM64_NODE=machine: only
# mab-amd64; the arm64 slot (containerd up, images loaded) gets a kubelet
# when a Machine of an arm64 MachineSet runs (hack/machinesim, cloud.sh).
# Switching on a running cluster drains and stops the node that must go.
STATIC=(amd64); [ "$ARM64_MODE" = static ] && STATIC+=(arm64)
for n in "${NODES[@]}"; do
  want=""; [[ " ${STATIC[*]} " == *" $n "* ]] && want=$(node_name "$n")
  cur=$("${ROOT}/hack/cluster/node.sh" name "$n")
  if [ -n "$cur" ] && [ "$cur" != "$want" ] && { [ -n "$want" ] || [ "$cur" = "$(node_name "$n")" ]; }; then
    log "slot ${n}: stopping node ${cur} (MAB_ARM64_NODE=${ARM64_MODE})"
    "${ROOT}/hack/cluster/node.sh" stop "$n" --drain --delete
  fi
  if [ -n "$want" ]; then
    "${ROOT}/hack/cluster/node.sh" start "$n" --name "$want"
  elif [ "$ARM64_MODE" = machine ]; then
    kc delete node "$(node_name "$n")" --ignore-not-found --wait=false >/dev/null
  fi
done

for n in "${STATIC[@]}"; do
  wait_for "node $(node_name "$n") registered" 60 kc get node "$(node_name "$n")"
  # (a Node registered by an older kubelet lacks the label; the kubelet never adds it)
  kc label node "$(node_name "$n")" "mab.local/arch=${n}" --overwrite >/dev/null
done
for n in "${STATIC[@]}"; do
  kc wait --for=condition=Ready "node/$(node_name "$n")" --timeout=90s >/dev/null
done

# ---------------------------------------------------------------- OpenShift Machine API
MAB_ARM64_NODE="$ARM64_MODE" "${ROOT}/hack/cluster/cloud.sh"

# ---------------------------------------------------------------- storage
kc apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ${STORAGE_CLASS}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
YAML
for i in $(seq -w 1 "${MAB_PV_COUNT:-12}"); do
  cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: mab-pv-${i}, labels: {mab.local/pool: "true"}}
spec:
  storageClassName: ${STORAGE_CLASS}
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteMany, ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "${STATE}/pv/${i}", type: DirectoryOrCreate}
YAML
done | kc apply -f - >/dev/null
start pv-recycler "${ROOT}/hack/cluster/pv-recycler.sh"

# ---------------------------------------------------------------- Tekton
"${ROOT}/hack/cluster/tekton.sh"

# ---------------------------------------------------------------- Tekton Chains (opt-in)
# MAB_CHAINS=1 (make test-e2e-chains): Chains signs and attests every build
# (chains.sh). Without it a running Chains is stopped: the other tiers do not
# pay for signing, and their repositories get no .sig/.att tags. (The env
# file below says MAB_CHAINS_RUNNING, not MAB_CHAINS: a shell that sources it
# must not opt in its next up.sh.)
if [ "${MAB_CHAINS:-0}" = 1 ]; then
  "${ROOT}/hack/cluster/chains.sh" start
else
  "${ROOT}/hack/cluster/chains.sh" stop
fi

# ---------------------------------------------------------------- env for tests and demo
cat > "${STATE}/env" <<ENV
export KUBECONFIG=${KUBECONFIG_FILE}
export MAB_REGISTRY=${REGISTRY}
export MAB_GIT_BASE=${GIT_BASE}
export MAB_GIT_ROOT=${STATE}/git
export MAB_STORAGE_CLASS=${STORAGE_CLASS}
export MAB_BASE_IMAGE=$(img base)
export MAB_BUILDER_IMAGE=$(img buildah)
export MAB_GIT_IMAGE=$(img git)
export MAB_NODEJS_IMAGE=$(img nodejs)
export MAB_MAVEN_IMAGE=$(img maven)
export MAB_JRE_IMAGE=$(img jre)
export MAB_ARM64_NODE=${ARM64_MODE}
export MAB_CHAINS_RUNNING=${MAB_CHAINS:-0}
export MAB_COSIGN=${COSIGN}
export MAB_CHAINS_PUBKEY=${STATE}/chains/cosign.pub
ENV
log "cluster up in $(( $(date +%s) - T0 ))s (builds $(( T_BUILD - T0 ))s): KUBECONFIG=${KUBECONFIG_FILE}; source ${STATE}/env"
