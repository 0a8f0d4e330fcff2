#!/usr/bin/env bash
# push: assemble the per-platform images, already pushed by digest by the
# build tasks, into one manifest list and push it with its tag. No layer is
# uploaded here: the list only refers to the images by digest.
#
# It runs as the index step at the end of every build task (INDEX_DIR set):
# the step publishes its platform's digest in INDEX_DIR, on the shared
# volume, then looks for every other platform's. The task that finds them
# all is the last to finish: it pushes the list, the others write empty
# results and leave. When two finish together and both find all, mkdir of
# INDEX_DIR/.assembling (atomic, on NFS too) lets one of them push. No
# pod of its own on the critical path. Without INDEX_DIR it is the push task
# of a retry that rebuilds nothing, every digest given.
#
# Index step only:
#   PLATFORM                   the task's platform
#   INDEX_DIR                  the run's index directory on the shared volume
#   OWN_DIGEST_FILE            the build step's IMAGE_DIGEST result file
#   OWN_COMMIT_FILE            optional: the task's COMMIT result file (a task
#                              that cloned for itself); the list is pushed
#                              only if every platform recorded the same one
#
# Environment (declared by the generated step):
#   IMAGE                      registry/repository:tag to push to
#   REPOSITORY                 registry/repository (IMAGE without its tag)
#   REGISTRY_AUTH_DIR          optional: mounted push Secret, with key
#                              .dockerconfigjson (kubernetes.io/dockerconfigjson)
#                              or .dockercfg (kubernetes.io/dockercfg)
#   IMAGE_DIGEST_<ARCH>        digest of each platform's image (ARCH upper case)
#                              the run does not build (all of them in the push
#                              task): an earlier run's, reused
#   RESULT_IMAGE_DIGEST        file receiving the manifest list digest
#   RESULT_IMAGE_URL           file receiving REPOSITORY (Tekton Chains reads
#                              the list as IMAGE_URL@IMAGE_DIGEST)
#   RESULT_ERROR               file receiving why the step failed (see lib.sh)
# Arguments: the platforms, e.g. linux/amd64 linux/arm64, in the order the
# list names them (the same spec gives the same list, byte for byte).
set -Eeuo pipefail
who=push
[[ -z "${INDEX_DIR:-}" ]] || who="index ${PLATFORM:-}"
trap 'on_err "$who" $? $LINENO "$BASH_COMMAND"' ERR
ERROR_PATTERN='^Error: |^error ' ERROR_MATCH=last

fail() { echo "$who: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${IMAGE:?push: IMAGE is not set}"
: "${REPOSITORY:?push: REPOSITORY is not set}"
: "${RESULT_IMAGE_DIGEST:?push: RESULT_IMAGE_DIGEST is not set}"
: "${RESULT_IMAGE_URL:?push: RESULT_IMAGE_URL is not set}"
(($# > 0)) || fail "no platforms given"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

digest_re='^sha256:[a-f0-9]{64}$'
if [[ -n "${INDEX_DIR:-}" ]]; then
  : "${PLATFORM:?index: PLATFORM is not set}"
  : "${OWN_DIGEST_FILE:?index: OWN_DIGEST_FILE is not set}"
  own="$(cat -- "$OWN_DIGEST_FILE" 2>/dev/null)" || own=""
  [[ "$own" =~ $digest_re ]] || fail "the build step recorded no image digest for $PLATFORM ('$own')"
  commit=""
  if [[ -n "${OWN_COMMIT_FILE:-}" ]]; then
    commit="$(cat -- "$OWN_COMMIT_FILE" 2>/dev/null)" || commit=""
    [[ "$commit" =~ ^[0-9a-f]{40,64}$ ]] || fail "the clone step recorded no commit ('$commit')"
  fi
  arch="${PLATFORM#*/}"
  mkdir -p -- "$INDEX_DIR"
  # Published whole or not at all: written aside, then renamed.
  printf '%s %s\n' "$own" "$commit" > "$INDEX_DIR/.$arch.$HOSTNAME.$$"
  mv -f -- "$INDEX_DIR/.$arch.$HOSTNAME.$$" "$INDEX_DIR/$arch"
  printf -v "IMAGE_DIGEST_${arch^^}" '%s' "$own"
  export "IMAGE_DIGEST_${arch^^}"
  not_mine() {
    echo "$who: $1"
    : > "$RESULT_IMAGE_DIGEST"
    : > "$RESULT_IMAGE_URL"
    exit 0
  }
  for platform in "$@"; do
    a="${platform#*/}"
    var="IMAGE_DIGEST_${a^^}"
    [[ -z "${!var:-}" ]] || continue
    [[ -f "$INDEX_DIR/$a" ]] || not_mine "$platform is not pushed yet: its task pushes the manifest list"
    read -r d c < "$INDEX_DIR/$a" || true
    if [[ -n "$commit" && "$c" != "$commit" ]]; then
      fail "$platform was built from commit ${c:-(unknown)} and $PLATFORM from $commit: not pushing a list of two commits; build again, or set spec.source.git.revision to a commit"
    fi
    printf -v "$var" '%s' "$d"
    export "$var"
  done
  mkdir -- "$INDEX_DIR/.assembling" 2>/dev/null || not_mine "another platform's task is pushing the manifest list"
  echo "$who: every platform is pushed: pushing the manifest list"
fi

if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  REGISTRY_AUTH_FILE="$(auth_file_of "$REGISTRY_AUTH_DIR" "$tmp")"
  [[ -n "$REGISTRY_AUTH_FILE" ]] || fail "the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)"
  export REGISTRY_AUTH_FILE
  echo "$who: using the registry credentials of the push Secret"
fi

list="localhost/multiarch-build-list:latest"
buildah manifest rm "$list" >/dev/null 2>&1 || true
logged buildah manifest create "$list" >/dev/null
for platform in "$@"; do
  arch="${platform#*/}"
  var="IMAGE_DIGEST_${arch^^}"
  digest="${!var:-}"
  [[ "$digest" =~ $digest_re ]] || fail "no image digest for $platform ($var='$digest'): did build-$arch succeed?"
  echo "$who: adding $platform $REPOSITORY@$digest"
  # Reads the image's manifest and configuration (for its platform), not its layers.
  logged buildah manifest add "$list" "docker://$REPOSITORY@$digest" >/dev/null
done

echo "$who: pushing the manifest list to $IMAGE"
# --all=false: the images are in the repository already; only the list goes.
logged buildah manifest push --quiet --all=false --format oci --digestfile "$tmp/digest" "$list" "docker://$IMAGE"
# Some buildah releases exit 0 when the push fails: trust the digest file only.
[[ -s "$tmp/digest" ]] || fail "buildah wrote no digest: the push to $IMAGE failed (see above)"
digest="$(cat "$tmp/digest")"
[[ "$digest" =~ $digest_re ]] || fail "buildah wrote no valid digest: '$digest'"

printf '%s' "$digest" > "$RESULT_IMAGE_DIGEST"
printf '%s' "$REPOSITORY" > "$RESULT_IMAGE_URL"
echo "$who: pushed $REPOSITORY@$digest"
