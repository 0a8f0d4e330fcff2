#!/usr/bin/env bash
# push: assemble the per-platform OCI archives into one manifest list, push it
# with every image, and report the digests.
#
# Environment (declared by the generated step):
#   IMAGE                      registry/repository:tag to push to
#   REPOSITORY                 registry/repository (IMAGE without its tag)
#   REGISTRY_AUTH_DIR          optional: mounted push Secret, with key
#                              .dockerconfigjson (kubernetes.io/dockerconfigjson)
#                              or .dockercfg (kubernetes.io/dockercfg)
#   ARCHIVE_<ARCH>             OCI archive of each platform (ARCH upper case)
#   RESULT_IMAGE_DIGEST        file receiving the manifest list digest
#   RESULT_IMAGE_URL           file receiving REPOSITORY@digest
#   RESULT_IMAGE_DIGEST_<ARCH> file receiving each platform's manifest digest
# Arguments: the platforms, e.g. linux/amd64 linux/arm64.
set -Eeuo pipefail
trap 'rc=$?; echo "push: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

fail() { echo "push: ERROR: $*" >&2; exit 1; }

: "${IMAGE:?push: IMAGE is not set}"
: "${REPOSITORY:?push: REPOSITORY is not set}"
: "${RESULT_IMAGE_DIGEST:?push: RESULT_IMAGE_DIGEST is not set}"
: "${RESULT_IMAGE_URL:?push: RESULT_IMAGE_URL is not set}"
(($# > 0)) || fail "no platforms given"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  if [[ -f "$REGISTRY_AUTH_DIR/.dockerconfigjson" ]]; then
    export REGISTRY_AUTH_FILE="$REGISTRY_AUTH_DIR/.dockerconfigjson"
  elif [[ -f "$REGISTRY_AUTH_DIR/.dockercfg" ]]; then
    # The legacy format is the "auths" object alone.
    { printf '{"auths":'; cat "$REGISTRY_AUTH_DIR/.dockercfg"; printf '}\n'; } > "$tmp/auth.json"
    export REGISTRY_AUTH_FILE="$tmp/auth.json"
  else
    fail "the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)"
  fi
  echo "push: using the registry credentials of the push Secret"
fi

list="localhost/multiarch-build-list:latest"
buildah manifest rm "$list" >/dev/null 2>&1 || true
buildah manifest create "$list" >/dev/null
for platform in "$@"; do
  arch="${platform#*/}"
  var="ARCHIVE_${arch^^}"
  archive="${!var:-}"
  [[ -n "$archive" ]] || fail "$var is not set for platform $platform"
  [[ -f "$archive" ]] || fail "no image for $platform at $archive: did build-$arch succeed?"
  echo "push: adding $platform from $archive"
  buildah manifest add "$list" "oci-archive:$archive" >/dev/null
done

echo "push: pushing the manifest list and its images to $IMAGE"
buildah manifest push --all --digestfile "$tmp/digest" "$list" "docker://$IMAGE"
# Some buildah releases exit 0 when the push fails: trust the digest file only.
[[ -s "$tmp/digest" ]] || fail "buildah wrote no digest: the push to $IMAGE failed (see above)"
digest="$(cat "$tmp/digest")"
[[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "buildah wrote no valid digest: '$digest'"

# The per-platform digests are read back from the index as pushed, not from
# the local list: the copy to the registry may rewrite platform manifests.
# (Creating a list from the remote one also works with buildah < 1.30, whose
# "manifest inspect" cannot read a registry.)
pushed="localhost/multiarch-build-pushed:latest"
buildah manifest rm "$pushed" >/dev/null 2>&1 || true
buildah manifest create --all "$pushed" "docker://$REPOSITORY@$digest" >/dev/null
buildah manifest inspect "$pushed" > "$tmp/index.json"
declare -A digests=()
current=""
while IFS= read -r token; do
  value="${token%\"}"
  value="${value##*\"}"
  case "$token" in
    '"digest"'*) current="$value" ;;
    '"architecture"'*) digests["$value"]="$current" ;;
  esac
done < <(grep -oE '"(digest|architecture)"[[:space:]]*:[[:space:]]*"[^"]*"' "$tmp/index.json")

for platform in "$@"; do
  arch="${platform#*/}"
  d="${digests[$arch]:-}"
  [[ "$d" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "the pushed index has no manifest for $platform"
  var="RESULT_IMAGE_DIGEST_${arch^^}"
  [[ -n "${!var:-}" ]] || fail "$var is not set"
  printf '%s' "$d" > "${!var}"
  echo "push: $platform $d"
done
printf '%s' "$digest" > "$RESULT_IMAGE_DIGEST"
printf '%s@%s' "$REPOSITORY" "$digest" > "$RESULT_IMAGE_URL"
echo "push: pushed $REPOSITORY@$digest"
