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

# The sources are someone's repository: a symlink in it may lead anywhere in
# this pod (ctx -> /, Containerfile -> /etc/shadow), and COPY would then read
# the pod's files. The context and the Containerfile are resolved and must lie
# inside the sources. (A symlink inside the context is buildah's business: COPY
# resolves it within the context.)
sources="$(realpath -e -- "$SOURCE_DIR")" || fail "the sources directory $SOURCE_DIR does not exist"
inside_sources() { [[ "$1" == "$sources" || "$1" == "${sources%/}/"* ]]; }
context="$(realpath -e -- "$SOURCE_DIR/$CONTEXT_DIR" 2>/dev/null)" ||
  fail "directory $CONTEXT_DIR (spec.source.contextDir) not found in the sources"
inside_sources "$context" ||
  fail "$CONTEXT_DIR (spec.source.contextDir) resolves to $context, outside the cloned sources: a symlink in the repository must not lead out of it"
[[ -d "$context" ]] || fail "$CONTEXT_DIR (spec.source.contextDir) is not a directory"
containerfile="$(realpath -e -- "$context/$CONTAINERFILE" 2>/dev/null)" ||
  fail "$CONTAINERFILE (spec.strategy.containerfile) not found in $CONTEXT_DIR"
inside_sources "$containerfile" ||
  fail "$CONTAINERFILE (spec.strategy.containerfile) resolves to $containerfile, outside the cloned sources: a symlink in the repository must not lead out of it"
[[ -f "$containerfile" ]] || fail "$CONTAINERFILE (spec.strategy.containerfile) in $CONTEXT_DIR is not a regular file"

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
