#!/usr/bin/env bash
# Installs, on a fresh Debian machine, what the tests and the local cluster
# need: buildah and a registry for the real build-script tests, qemu-user-static
# for arm64 binaries, and the node runtime (containerd, runc, CNI) for the
# end-to-end cluster. Idempotent: installs only what is missing.
set -euo pipefail

pkgs=(make git jq curl ca-certificates buildah skopeo docker-registry qemu-user-static binfmt-support
      busybox-static uidmap)
# npm: the machine's Node.js may already ship it (nodesource); Debian's otherwise.
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if [ -f "$(dirname "$0")/cluster/packages.txt" ]; then
  # shellcheck disable=SC2207
  pkgs+=($(grep -v '^#' "$(dirname "$0")/cluster/packages.txt"))
fi

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# The build-script tests fetch Debian's busybox-static for arm64 (apt-get download).
need_update=false
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  need_update=true
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || $need_update; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# arm64 binaries run under qemu-user-static through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 2>/dev/null || update-binfmts --enable 2>/dev/null || true
fi
if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "install-deps: binfmt qemu-aarch64 enabled"
else
  echo "install-deps: WARNING: binfmt qemu-aarch64 handler is not enabled; arm64 builds cannot run here" >&2
fi
