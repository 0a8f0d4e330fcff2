#!/usr/bin/env bash
# Pushes the local multi-arch images to the cluster's registry (skipped when
# the registry has them) and imports them into each node's containerd
# (skipped when present). Called by up.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bh() { buildah --root "${CACHE}/buildah/root" --runroot "/run/mab-buildah-$(echo "$CACHE" | md5sum | cut -c1-8)" --storage-driver overlay "$@"; }

# Tekton's helper images: FROM scratch + the static binary at /ko-app/<name>,
# where Tekton's pod builder expects it (ko's layout).
for b in entrypoint nop workingdirinit sidecarlogresults; do
  out="${IMAGES_DIR}/tekton-${b}-${TEKTON_VERSION}-amd64.tar"
  [ -f "$out" ] && continue
  c=$(bh from --quiet scratch)
  bh copy --quiet "$c" "${TEKTON_BIN}/${b}" "/ko-app/${b}" >/dev/null
  bh config --os linux --arch amd64 --entrypoint "[\"/ko-app/${b}\"]" "$c"
  bh commit --quiet --rm "$c" "mab-local/tekton-${b}:${TEKTON_VERSION}" >/dev/null
  bh push --quiet "mab-local/tekton-${b}:${TEKTON_VERSION}" "docker-archive:${out}.tmp:mab-local/tekton-${b}:${TEKTON_VERSION}"
  mv "${out}.tmp" "$out"
  bh rmi -f "mab-local/tekton-${b}:${TEKTON_VERSION}" >/dev/null 2>&1 || true
done

# Multi-arch indexes in the registry.
for name in "${STEP_IMAGES[@]}"; do
  ref="$(img "$name")"
  if curl -fs -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' \
      "http://${REGISTRY}/v2/mab/${name}/manifests/${IMG_TAG[$name]}"; then continue; fi
  list="mab-list-${name}"
  bh manifest rm "$list" >/dev/null 2>&1 || true
  bh manifest create "$list" >/dev/null
  for a in amd64 arm64; do
    bh manifest add --arch "$a" --os linux "$list" "docker-archive:$(img_archive "$name" "$a")" >/dev/null
  done
  bh manifest push --quiet --all --tls-verify=false --format oci "$list" "docker://${ref}"
  bh manifest rm "$list" >/dev/null
  log "pushed ${ref} (linux/amd64, linux/arm64)"
done

# The digest the registry serves for each step image's tag: a node that pulls
# it keeps the name <repo>@<that digest>, which the kubelet reports as the
# container's imageID; Tekton copies it to the TaskRun's steps and Tekton
# Chains records it in the provenance (it refuses a bare sha256:<id>, which is
# what a node reports for an image imported without that name).
declare -A INDEX_DIGEST=()
for name in "${STEP_IMAGES[@]}"; do
  INDEX_DIGEST[$name]=$(curl -fsSI -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://${REGISTRY}/v2/mab/${name}/manifests/${IMG_TAG[$name]}" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
  [[ "${INDEX_DIGEST[$name]}" == sha256:* ]] || die "no digest for $(img "$name") in the registry"
done

# Node images. See up.sh for which variant each node gets and why.
for n in "${NODES[@]}"; do
  sock="${RUN}/${n}/containerd.sock"
  have="$(ctr -a "$sock" -n k8s.io images ls -q)"
  imp() { # ARCHIVE SRC-NAME [DEST-NAME]
    local dst="${3:-$2}"
    grep -qxF "$dst" <<<"$have" && return 0
    ctr -a "$sock" -n k8s.io images import --all-platforms --snapshotter overlayfs "$1" >/dev/null
    [ "$dst" = "$2" ] || ctr -a "$sock" -n k8s.io images tag --force "$2" "$dst" >/dev/null
  }
  imp "${IMAGES_DIR}/pause-${IMG_TAG[pause]}-amd64.tar" "docker.io/${PAUSE_IMAGE}"
  for b in entrypoint nop workingdirinit sidecarlogresults; do
    imp "${IMAGES_DIR}/tekton-${b}-${TEKTON_VERSION}-amd64.tar" "docker.io/${TEKTON_IMG_PREFIX}-${b}:${TEKTON_VERSION}"
  done
  for name in "${STEP_IMAGES[@]}"; do
    a="$n"; [ "$name" = buildah ] && a=amd64
    imp "$(img_archive "$name" "$a")" "docker.io/mab-local/${name}:${IMG_TAG[$name]}" "$(img "$name")"
    dref="${REGISTRY}/mab/${name}@${INDEX_DIGEST[$name]}"
    grep -qxF "$dref" <<<"$have" || ctr -a "$sock" -n k8s.io images tag --force "$(img "$name")" "$dref" >/dev/null
  done
done
log "images loaded"
