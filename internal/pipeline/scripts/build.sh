#!/usr/bin/env bash
# build: build the image of one platform with buildah, natively on a node of
# that platform, and push it to the output repository by digest (no tag).
#
# Environment (declared by the generated step; spec values only ever arrive here
# or as arguments, never in this text):
#   PLATFORM           target platform, e.g. linux/arm64 (from the task, never uname)
#   SOURCE_DIR         sources this platform builds from (the shared clone, or the
#                      platform's private copy for NodeJS)
#   CONTEXT_DIR        build context, relative to SOURCE_DIR
#   CONTAINERFILE      Containerfile, relative to the build context
#   REPOSITORY         registry/repository to push to (spec.output.image without tag)
#   SOURCE_DATE_EPOCH  commit time of the sources (seconds since the epoch): the
#                      image's creation time and the time of every file the build
#                      adds, so that the same commit gives the same digest;
#                      or SOURCE_DATE_EPOCH_FILE, the file holding it (the
#                      SOURCE_DATE_EPOCH result of the task's own clone step)
#   OCI_DIR            scratch directory on the node-local volume
#   CACHE_REPOSITORY   optional: registry/repository of the layer cache
#                      (spec.output.layerCache); empty builds every layer
#   BASES_FILE         optional, with CACHE_REPOSITORY: the base images of this
#                      platform by digest (preflight.sh); with COMMIT_FILE, the
#                      key of the image reuse below. Absent: no reuse.
#   COMMIT_FILE        optional: the commit the sources are checked out at
#   BUILDER_IMAGE      optional: this step's image (another buildah may lay
#                      out the same image differently: part of the key)
#   REGISTRY_AUTH_DIR  optional: mounted push Secret, with key .dockerconfigjson
#                      (kubernetes.io/dockerconfigjson) or .dockercfg
#   RESULT_IMAGE_DIGEST  file receiving the digest of the pushed image manifest
#   RESULT_IMAGE_URL     file receiving REPOSITORY (Tekton Chains reads
#                        IMAGE_URL@IMAGE_DIGEST)
#   RESULT_REUSED      optional: file receiving the record of the image reused
#                      instead of building (see below), empty when it built
#   RESULT_PUSH_STARTED  optional: file receiving when the push started
#                        (seconds since the epoch; the building/pushing split
#                        of status.platforms[].timings)
#   RESULT_ERROR       file receiving why the step failed (see lib.sh)
#   STORAGE_DRIVER, BUILDAH_ISOLATION: read by buildah itself (vfs, chroot)
# Arguments: build arguments NAME=VALUE, each passed as --build-arg NAME=VALUE.
set -Eeuo pipefail
trap 'on_err "build ${PLATFORM:-}" $? $LINENO "$BASH_COMMAND"' ERR
# buildah's own error is its last line starting so (a RUN may print others).
ERROR_PATTERN='^Error: |^error building at STEP' ERROR_MATCH=last

fail() { echo "build $PLATFORM: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${PLATFORM:?build: PLATFORM is not set}"
: "${SOURCE_DIR:?build: SOURCE_DIR is not set}"
: "${CONTEXT_DIR:?build: CONTEXT_DIR is not set}"
: "${CONTAINERFILE:?build: CONTAINERFILE is not set}"
: "${REPOSITORY:?build: REPOSITORY is not set}"
if [[ -z "${SOURCE_DATE_EPOCH:-}" && -n "${SOURCE_DATE_EPOCH_FILE:-}" ]]; then
  SOURCE_DATE_EPOCH="$(cat -- "$SOURCE_DATE_EPOCH_FILE" 2>/dev/null)" || SOURCE_DATE_EPOCH=""
fi
: "${SOURCE_DATE_EPOCH:?build: SOURCE_DATE_EPOCH is not set}"
: "${OCI_DIR:?build: OCI_DIR is not set}"
: "${RESULT_IMAGE_DIGEST:?build: RESULT_IMAGE_DIGEST is not set}"
: "${RESULT_IMAGE_URL:?build: RESULT_IMAGE_URL is not set}"
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]{1,12}$ ]] || fail "SOURCE_DATE_EPOCH '$SOURCE_DATE_EPOCH' is not a time in seconds"

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

# The push Secret is for the push (set below, after the build) and, with the
# layer cache, for the cache repository, which the build itself reads and
# writes: the FROM images are then pulled with it too where it names their
# registry (buildah has one set of credentials per build), as documented.
auth_file=""
if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  auth_file="$(auth_file_of "$REGISTRY_AUTH_DIR" "$OCI_DIR")"
  [[ -n "$auth_file" ]] || fail "the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)"
  echo "build $PLATFORM: using the registry credentials of the push Secret"
fi

build_args=()
for arg in "$@"; do
  build_args+=(--build-arg "$arg")
done

cache_args=()
if [[ -n "${CACHE_REPOSITORY:-}" ]]; then
  # --layers with a registry cache: every layer is looked up in the cache
  # repository under a key made of the layers below it, the instruction and
  # the content it copies, pulled when found, built and pushed when not.
  # The keys differ per architecture (the base image's layers do), so the
  # platforms share the repository, not layers. A cached layer keeps the
  # times of the build that made it: a rebuild of another commit that
  # changes nothing reuses the earlier image whole.
  cache_args=(--layers --cache-from "$CACHE_REPOSITORY" --cache-to "$CACHE_REPOSITORY")
  [[ -z "$auth_file" ]] || export REGISTRY_AUTH_FILE="$auth_file"
  echo "build $PLATFORM: layer cache in $CACHE_REPOSITORY"
fi

# Image reuse, with the layer cache: an image is fully determined by the
# commit (the Containerfile and every file it copies), the context, the
# Containerfile's path, the build arguments, the platform, the builder image
# and the digests of the images it builds FROM; the layer cache reuses every
# layer of it then, and --timestamp makes the result the same image, digest
# and all. So the
# first build of such a key tags its image image-<sha256 of the key> in the
# cache repository, and a later build of the same key reuses that image
# without building (the pod's start, the clone and these reads are what is
# left of a rebuild). A base image whose tag moved, another commit or
# another argument is another key. What the layer cache does not key either
# (what a RUN fetches from the network) is not keyed here; ADD from a URL
# turns the reuse off (preflight.sh writes no BASES_FILE).
reuse_tag=""
[[ -z "${RESULT_REUSED:-}" ]] || : > "$RESULT_REUSED"
if [[ -n "${CACHE_REPOSITORY:-}" && -n "${BASES_FILE:-}" && -s "$BASES_FILE" && -n "${COMMIT_FILE:-}" ]]; then
  commit="$(cat -- "$COMMIT_FILE" 2>/dev/null)" || commit=""
  if [[ "$commit" =~ ^[0-9a-f]{40}([0-9a-f]{24})?$ ]]; then
    key="$({ printf '%s\0' "multiarch-build image key v1" "$PLATFORM" "$commit" "$SOURCE_DATE_EPOCH" \
      "${BUILDER_IMAGE:-}" "$CONTEXT_DIR" "$CONTAINERFILE" "$#" ${@+"$@"}; cat -- "$BASES_FILE"; } | sha256sum)"
    reuse_tag="$CACHE_REPOSITORY:image-${key%% *}"
  fi
fi
# reused_digest REF: the digest of the first entry of the list REF names,
# read from the registry (one manifest); fails when it cannot. buildah 1.28
# reads a name it does not store from the registry, without docker://; a
# buildah that does not fails, and the build builds.
reused_digest() {
  local d
  d="$(buildah manifest inspect "$1" 2>/dev/null | sed -n 's/^[[:space:]]*"digest": "\(sha256:[0-9a-f]\{64\}\)".*/\1/p' | head -n 1)" || return 1
  [[ -n "$d" ]] && printf '%s' "$d"
}
# in_repository DIGEST: whether REPOSITORY has the image DIGEST (a cache
# repository of its own records images pushed to another output repository).
# manifest inspect reads lists only: added to a list, the image is read.
in_repository() {
  local list="localhost/multiarch-build-reuse:${PLATFORM//\//-}"
  buildah manifest create "$list" >/dev/null 2>&1 &&
    buildah manifest add "$list" "docker://$REPOSITORY@$1" >/dev/null 2>&1
}
# (Read with the push Secret: exported with the layer cache above.)
if [[ -n "$reuse_tag" ]]; then
  if reused="$(reused_digest "$reuse_tag")" &&
    { [[ "$CACHE_REPOSITORY" == "$REPOSITORY" ]] || in_repository "$reused"; }; then
    [[ -z "${RESULT_PUSH_STARTED:-}" ]] || date +%s > "$RESULT_PUSH_STARTED"
    printf '%s' "$reused" > "$RESULT_IMAGE_DIGEST"
    printf '%s' "$REPOSITORY" > "$RESULT_IMAGE_URL"
    [[ -z "${RESULT_REUSED:-}" ]] || printf '%s' "$reuse_tag" > "$RESULT_REUSED"
    echo "build $PLATFORM: commit $commit, with the same Containerfile, build arguments and base images, was built before: reusing $REPOSITORY@$reused ($reuse_tag)"
    exit 0
  fi
  echo "build $PLATFORM: no image for this commit, build arguments and base images in the layer cache yet: building"
fi

tag="localhost/multiarch-build:${PLATFORM//\//-}"
echo "build $PLATFORM: building $CONTAINERFILE in $CONTEXT_DIR (timestamp $SOURCE_DATE_EPOCH)"
# --timestamp: the image's creation time and the time of every file the
# build adds are the commit's, so two builds of the same commit and spec
# give the same layers and the same digest (RUN steps that fetch from the
# network aside). buildah >= 1.19; --source-date-epoch (1.38) is not needed.
logged buildah build --platform "$PLATFORM" --timestamp "$SOURCE_DATE_EPOCH" \
  ${cache_args[@]+"${cache_args[@]}"} \
  --file "$containerfile" --tag "$tag" ${build_args[@]+"${build_args[@]}"} "$context"

# A Containerfile may pin another platform (FROM --platform=...): catch it here
# rather than pushing a manifest list that lies about its content.
arch="$(buildah inspect --type image --format '{{.OCIv1.Architecture}}' "$tag")"
[[ "$arch" == "${PLATFORM#*/}" ]] || fail "the image built is for architecture $arch, not ${PLATFORM#*/}"

# Push by digest, without a tag. buildah cannot push an image from its
# storage to a digest it does not know yet (the layers are compressed on the
# way), so the image is first written, compressed, as an OCI layout on this
# node's volume, then copied unchanged from there: as the only instance of a
# local list pushed to that list's own digest, which sends the image by
# digest and the one-entry list next to it (untagged). The push task lists
# this digest in the manifest list.
[[ -z "${RESULT_PUSH_STARTED:-}" ]] || date +%s > "$RESULT_PUSH_STARTED"
[[ -z "$auth_file" ]] || export REGISTRY_AUTH_FILE="$auth_file"
layout="$OCI_DIR/layout"
rm -rf "$layout"
mkdir -p "$OCI_DIR"
logged buildah push --quiet --digestfile "$OCI_DIR/image.digest" "$tag" "oci:$layout:image"
digest="$(cat "$OCI_DIR/image.digest")"
[[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "buildah wrote no valid image digest: '$digest'"

list="localhost/multiarch-build-one:${PLATFORM//\//-}"
buildah manifest rm "$list" >/dev/null 2>&1 || true
logged buildah manifest create "$list" >/dev/null
logged buildah manifest add "$list" "oci:$layout:image" >/dev/null
logged buildah manifest push --quiet --format oci --digestfile "$OCI_DIR/list.digest" "$list" "oci:$OCI_DIR/list:list"
list_digest="$(cat "$OCI_DIR/list.digest")"
[[ "$list_digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "buildah wrote no valid list digest: '$list_digest'"
echo "build $PLATFORM: pushing $digest to $REPOSITORY"
logged buildah manifest push --quiet --all --format oci --digestfile "$OCI_DIR/pushed.digest" "$list" "docker://$REPOSITORY@$list_digest"
# Some buildah releases exit 0 when the push fails: trust the digest file only.
[[ "$(cat "$OCI_DIR/pushed.digest" 2>/dev/null)" == "$list_digest" ]] ||
  fail "buildah did not confirm the push of $digest to $REPOSITORY (see above)"

printf '%s' "$digest" > "$RESULT_IMAGE_DIGEST"
printf '%s' "$REPOSITORY" > "$RESULT_IMAGE_URL"
echo "build $PLATFORM: pushed $REPOSITORY@$digest"

# Record the image under its key for the next build of it (see above): the
# one-entry list just pushed, tagged (buildah pushes an image from its oci:
# layout only through a list). The cache is an optimisation: failing to
# write it fails nothing.
if [[ -n "$reuse_tag" ]]; then
  rm -f "$OCI_DIR/reuse.digest"
  if buildah manifest push --quiet --all --format oci --digestfile "$OCI_DIR/reuse.digest" "$list" "docker://$reuse_tag" 2>&1 &&
    [[ "$(cat "$OCI_DIR/reuse.digest" 2>/dev/null)" == "$list_digest" ]]; then
    echo "build $PLATFORM: recorded as $reuse_tag"
  else
    echo "build $PLATFORM: warning: could not record $digest as $reuse_tag; the next build of this commit builds again from the layer cache"
  fi
fi
