#!/usr/bin/env bash
# Builds (or finds in the cache) everything the local cluster runs, without
# starting anything: Debian packages, Kubernetes + etcd, Tekton, the images.
# Pinned versions, cached in ~/.cache/multiarch-build-operator; a second run
# rebuilds nothing. The image build (mostly downloads and file copies) runs
# alongside the Go builds (CPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t0=$(date +%s)
"${ROOT}/hack/cluster/install-deps.sh"
( s=$(date +%s); "${ROOT}/hack/images/build-images.sh"; log "images ready ($(( $(date +%s) - s ))s)" ) &
images=$!
kube=(kube-apiserver kube-controller-manager kube-scheduler kubelet etcd)
command -v kubectl >/dev/null || kube+=(kubectl)
"${ROOT}/hack/build-kube.sh" "${kube[@]}" >/dev/null
t1=$(date +%s)
"${ROOT}/hack/cluster/build-tekton.sh"
t2=$(date +%s)
# Argo CD's own health code, for the e2e tier's verdicts on live builds.
"${ROOT}/hack/argocd/build-healthtool.sh" >/dev/null
wait "$images" || die "building the images failed"
log "built in $(( $(date +%s) - t0 ))s: kube+etcd $((t1 - t0))s, tekton $((t2 - t1))s, argocd-health $(( $(date +%s) - t2 ))s, images in parallel"
