#!/usr/bin/env bash
# push: assemble the per-platform images, already pushed by digest by the
# build tasks, into one manifest list and push it with its tag. No layer is
# uploaded here: the list only refers to the images by digest.
#
# Environment (declared by the generated step):
#   IMAGE                      registry/repository:tag to push to
#   REPOSITORY                 registry/repository (IMAGE without its tag)
#   REGISTRY_AUTH_DIR          optional: mounted push Secret, with key
#                              .dockerconfigjson (kubernetes.io/dockerconfigjson)
#                              or .dockercfg (kubernetes.io/dockercfg)
#   IMAGE_DIGEST_<ARCH>        digest of each platform's image (ARCH upper case),
#                              the IMAGE_DIGEST result of its build task
#   RESULT_IMAGE_DIGEST        file receiving the manifest list digest
#   RESULT_IMAGE_URL           file receiving REPOSITORY (Tekton Chains reads
#                              the list as IMAGE_URL@IMAGE_DIGEST)
#   RESULT_ERROR               file receiving why the step failed (see lib.sh)
# Arguments: the platforms, e.g. linux/amd64 linux/arm64, in the order the
# list names them (the same spec gives the same list, byte for byte).
set -Eeuo pipefail
trap 'on_err "push" $? $LINENO "$BASH_COMMAND"' ERR
ERROR_PATTERN='^Error: |^error ' ERROR_MATCH=last

fail() { echo "push: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${IMAGE:?push: IMAGE is not set}"
: "${REPOSITORY:?push: REPOSITORY is not set}"
: "${RESULT_IMAGE_DIGEST:?push: RESULT_IMAGE_DIGEST is not set}"
: "${RESULT_IMAGE_URL:?push: RESULT_IMAGE_URL is not set}"
(($# > 0)) || fail "no platforms given"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  REGISTRY_AUTH_FILE="$(auth_file_of "$REGISTRY_AUTH_DIR" "$tmp")"
  [[ -n "$REGISTRY_AUTH_FILE" ]] || fail "the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)"
  export REGISTRY_AUTH_FILE
  echo "push: using the registry credentials of the push Secret"
fi

list="localhost/multiarch-build-list:latest"
buildah manifest rm "$list" >/dev/null 2>&1 || true
logged buildah manifest create "$list" >/dev/null
for platform in "$@"; do
  arch="${platform#*/}"
  var="IMAGE_DIGEST_${arch^^}"
  digest="${!var:-}"
  [[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "no image digest for $platform ($var='$digest'): did build-$arch succeed?"
  echo "push: adding $platform $REPOSITORY@$digest"
  # Reads the image's manifest and configuration (for its platform), not its layers.
  logged buildah manifest add "$list" "docker://$REPOSITORY@$digest" >/dev/null
done

echo "push: pushing the manifest list to $IMAGE"
# --all=false: the images are in the repository already; only the list goes.
logged buildah manifest push --quiet --all=false --format oci --digestfile "$tmp/digest" "$list" "docker://$IMAGE"
# Some buildah releases exit 0 when the push fails: trust the digest file only.
[[ -s "$tmp/digest" ]] || fail "buildah wrote no digest: the push to $IMAGE failed (see above)"
digest="$(cat "$tmp/digest")"
[[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "buildah wrote no valid digest: '$digest'"

printf '%s' "$digest" > "$RESULT_IMAGE_DIGEST"
printf '%s' "$REPOSITORY" > "$RESULT_IMAGE_URL"
echo "push: pushed $REPOSITORY@$digest"
