#!/usr/bin/env bash
# Builds hack/argocd/healthtool, the CLI that judges objects with Argo CD's own
# health code configured from the argocd-cm snippet of docs/gitops.md, once per
# Argo CD version, into the cache outside the work tree; a second run builds
# nothing (unless the module's sources changed: a stamp next to the binary
# holds their hash). The binary's path is the last line on stdout, timings go
# to stderr.
#
#   bin="$(hack/argocd/build-healthtool.sh)"
#   "$bin" --docs docs/gitops.md build.yaml          # or: kubectl get mab/htop -o json | "$bin" --docs docs/gitops.md
#
# The module's tests: cd hack/argocd/healthtool && go test ./...
set -euo pipefail

CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
MOD="$(cd "$(dirname "${BASH_SOURCE[0]}")/healthtool" && pwd)"

log() { echo "build-healthtool: $*" >&2; }

version="$(cd "$MOD" && go list -m -f '{{.Version}}' github.com/argoproj/argo-cd/v2)"
dir="${CACHE}/argocd-healthtool-${version}"
bin="${dir}/argocd-health"
stamp="${bin}.sources"
sources="$(cd "$MOD" && { cat go.mod go.sum; for f in *.go; do [[ $f == *_test.go ]] || cat "$f"; done; } | sha256sum | cut -d' ' -f1)"

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sources" ]; then
  log "${bin} present (argo-cd ${version}), not rebuilding"
else
  mkdir -p "$dir"
  log "building argocd-health against argo-cd ${version} (a cold build takes minutes)"
  start=$SECONDS
  (cd "$MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${bin}.tmp" .)
  mv "${bin}.tmp" "$bin"
  echo "$sources" > "$stamp"
  log "built ${bin} in $((SECONDS - start))s, $(du -h "$bin" | cut -f1)"
fi
echo "$bin"
