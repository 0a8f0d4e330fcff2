#!/usr/bin/env bash
# check-reused: the first task of a retry run (annotation
# build.multiarch.io/retry-failed) that lists again images an earlier run
# pushed. It reads each one's manifest from the repository, with the push
# credentials (the operator reads no Secret), and fails naming the first
# digest that is gone: the retry then builds nothing.
#
# Environment (declared by the generated step):
#   REPOSITORY          registry/repository the images were pushed to by digest
#   REGISTRY_AUTH_DIR   optional: mounted push Secret (.dockerconfigjson or .dockercfg)
#   RESULT_ERROR        file receiving why the step failed (see lib.sh)
# Arguments: triples PLATFORM DIGEST RUN (the run that built the image).
set -Eeuo pipefail
trap 'on_err "check-reused" $? $LINENO "$BASH_COMMAND"' ERR
# The diagnosis names the digest first; buildah's error follows it.
ERROR_PATTERN='^$.' ERROR_MATCH=first

fail() { echo "check-reused: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${REPOSITORY:?check-reused: REPOSITORY is not set}"
(($# > 0 && $# % 3 == 0)) || fail "arguments must be triples PLATFORM DIGEST RUN, got $# arguments"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  REGISTRY_AUTH_FILE="$(auth_file_of "$REGISTRY_AUTH_DIR" "$tmp")"
  [[ -n "$REGISTRY_AUTH_FILE" ]] || fail "the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)"
  export REGISTRY_AUTH_FILE
fi

list="localhost/multiarch-build-check:latest"
buildah manifest rm "$list" >/dev/null 2>&1 || true
logged buildah manifest create "$list" >/dev/null
while (($# > 0)); do
  platform="$1" digest="$2" run="$3"
  shift 3
  [[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "reused digest '$digest' of $platform is not sha256:<64 hex>"
  echo "check-reused: $platform $REPOSITORY@$digest (pushed by run $run)"
  # Reads the image's manifest and configuration, not its layers.
  if ! logged buildah manifest add "$list" "docker://$REPOSITORY@$digest" >/dev/null; then
    why="$(grep -E -e '^Error: |^error ' -- "$STEP_STDERR" 2>/dev/null | tail -n 1)" || why=""
    fail "reused image $digest ($platform, pushed by run $run) is gone from $REPOSITORY or unreadable with the push credentials; start a full build with the annotation build.multiarch.io/rebuild${why:+: $why}"
  fi
done
echo "check-reused: every reused image is in $REPOSITORY"
