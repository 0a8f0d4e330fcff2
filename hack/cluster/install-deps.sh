#!/usr/bin/env bash
# Installs the Debian packages the local cluster needs (idempotent; a second run
# installs nothing). Called from .ci/run on a fresh Debian 12 machine.
#
#   containerd runc containernetworking-plugins conntrack iptables  - two real nodes
#   buildah skopeo                                                  - build/inspect images
#   docker-registry                                                 - the target registry
#   qemu-user-static binfmt-support                                 - run arm64 binaries
#   busybox-static git jq curl openssl                              - images, git server, scripts
#   tinyproxy                                                       - the proxy e2e story's forward proxy (proxy-world.sh)
set -euo pipefail

PKGS=(containerd runc containernetworking-plugins conntrack iptables
      buildah skopeo docker-registry qemu-user-static binfmt-support
      busybox-static git jq curl openssl ca-certificates tinyproxy)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No services are started from packages: the cluster scripts run their own
  # containerd and registry on private sockets, ports and state directories.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# binfmt for arm64 with the F (fix-binary) flag, so that arm64 binaries also run
# inside containers whose root has no qemu.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if ! grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "install-deps: qemu-aarch64 binfmt handler is missing or lacks the F flag" >&2
  exit 1
fi
echo "install-deps: ok" >&2
