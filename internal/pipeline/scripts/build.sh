#!/usr/bin/env bash
# build: build the image of one platform with buildah, natively on a node of
# that platform, and save it as an OCI archive on the shared volume.
#
# Environment (declared by the generated step; spec values only ever arrive here
# or as arguments, never in this text):
#   PLATFORM       target platform, e.g. linux/arm64 (from the task, never uname)
#   SOURCE_DIR     sources this platform builds from (the shared clone, or the
#                  platform's private copy for NodeJS)
#   CONTEXT_DIR    build context, relative to SOURCE_DIR
#   CONTAINERFILE  Containerfile, relative to the build context
#   ARCHIVE        OCI archive to write (per platform and per run)
#   STORAGE_DRIVER, BUILDAH_ISOLATION: read by buildah itself (vfs, chroot)
# Arguments: build arguments NAME=VALUE, each passed as --build-arg NAME=VALUE.
set -Eeuo pipefail
trap 'rc=$?; echo "build ${PLATFORM:-}: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

fail() { echo "build $PLATFORM: ERROR: $*" >&2; exit 1; }

: "${PLATFORM:?build: PLATFORM is not set}"
: "${SOURCE_DIR:?build: SOURCE_DIR is not set}"
: "${CONTEXT_DIR:?build: CONTEXT_DIR is not set}"
: "${CONTAINERFILE:?build: CONTAINERFILE is not set}"
: "${ARCHIVE:?build: ARCHIVE is not set}"

context="$SOURCE_DIR/$CONTEXT_DIR"
containerfile="$context/$CONTAINERFILE"
[[ -d "$context" ]] || fail "directory $CONTEXT_DIR (spec.source.contextDir) not found in the sources"
[[ -f "$containerfile" ]] || fail "$CONTAINERFILE (spec.strategy.containerfile) not found in $CONTEXT_DIR"

build_args=()
for arg in "$@"; do
  build_args+=(--build-arg "$arg")
done

tag="localhost/multiarch-build:${PLATFORM//\//-}"
echo "build $PLATFORM: building $CONTAINERFILE in $CONTEXT_DIR"
buildah build --platform "$PLATFORM" --file "$containerfile" --tag "$tag" \
  ${build_args[@]+"${build_args[@]}"} "$context"

# A Containerfile may pin another platform (FROM --platform=...): catch it here
# rather than pushing a manifest list that lies about its content.
arch="$(buildah inspect --type image --format '{{.OCIv1.Architecture}}' "$tag")"
[[ "$arch" == "${PLATFORM#*/}" ]] || fail "the image built is for architecture $arch, not ${PLATFORM#*/}"

mkdir -p "${ARCHIVE%/*}"
rm -f "$ARCHIVE"
buildah push --quiet "$tag" "oci-archive:$ARCHIVE"
echo "build $PLATFORM: saved the image to $ARCHIVE"
