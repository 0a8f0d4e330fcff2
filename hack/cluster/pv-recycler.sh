#!/usr/bin/env bash
# Returns Released PersistentVolumes of the local pool to Available, with an
# empty directory, so a long-lived local cluster never runs out of volumes.
# Started (and stopped) by up.sh/down.sh; runs until killed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
while sleep 3; do
  kc get pv -l mab.local/pool=true -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{" "}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null |
  while read -r pv path; do
    [ -n "$pv" ] || continue
    case "$path" in "${STATE}/pv/"*) ;; *) continue ;; esac
    find "$path" -mindepth 1 -delete 2>/dev/null || rm -rf "${path:?}"/* 2>/dev/null
    kc patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null && echo "recycled $pv"
  done
done
