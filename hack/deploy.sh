#!/usr/bin/env bash
# `make deploy` / `make undeploy`: renders config/default (the restricted
# manager, its RBAC, the CRD and the builder's SCC role) with the image IMG
# and extra manager flags, and applies (or deletes) it with kubectl. The
# overlay is a temporary directory: config/ is never rewritten.
#
#   hack/deploy.sh apply|delete|render IMG [--flag=value ...]
# IMG: registry/repo:tag or registry/repo@sha256:digest.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?usage: $0 apply|delete|render IMG [manager flags]}"; img="${2:?IMG}"; shift 2
KUSTOMIZE="${KUSTOMIZE:-bin/kustomize}"
read -r -a kubectl <<<"${KUBECTL:-kubectl}"

# The image config/manager names; the overlay replaces it.
base_image=$(sed -n 's/^ *newName: *//p' config/manager/kustomization.yaml | head -1)
[ -n "$base_image" ] || { echo "deploy: no newName in config/manager/kustomization.yaml" >&2; exit 1; }
case "$img" in
  *@sha256:*) name="${img%@*}"; ref="  digest: ${img#*@}" ;;
  *) last="${img##*/}"
     if [[ "$last" == *:* ]]; then name="${img%:*}"; ref="  newTag: \"${img##*:}\""; else name="$img"; ref="  newTag: latest"; fi ;;
esac

tmp=$(mktemp -d "config/.deploy-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
{
  echo "resources:"
  echo "- ../default"
  echo "images:"
  echo "- name: ${base_image}"
  echo "  newName: ${name}"
  echo "$ref"
  if [ $# -gt 0 ]; then
    echo "patches:"
    echo "- target: {kind: Deployment, name: multiarch-build-controller-manager}"
    echo "  patch: |-"
    for a in "$@"; do
      # JSON string: flags are passed as one argv entry each, never through a shell.
      printf '    - {op: add, path: /spec/template/spec/containers/0/args/-, value: %s}\n' "$(jq -Rn --arg v "$a" '$v')"
    done
  fi
} > "${tmp}/kustomization.yaml"

case "$action" in
  render) "$KUSTOMIZE" build "$tmp" ;;
  apply) "$KUSTOMIZE" build "$tmp" | "${kubectl[@]}" apply --server-side --force-conflicts -f - ;;
  delete) "$KUSTOMIZE" build "$tmp" | "${kubectl[@]}" delete --ignore-not-found -f - ;;
  *) echo "deploy: unknown action $action" >&2; exit 2 ;;
esac
