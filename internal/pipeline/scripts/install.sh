#!/usr/bin/env bash
# install: install the NodeJS dependencies of one platform, on a node of that
# platform, in a copy of the sources private to the platform (native modules
# differ per architecture; the platform's build task reads only this copy).
#
# Environment (declared by the generated step; spec values only ever arrive here
# or as arguments, never in this text):
#   PLATFORM          target platform, e.g. linux/arm64 (from the task, not uname)
#   SOURCE_DIR        the shared clone (read only)
#   CONTEXT_DIR       directory of package.json, relative to the repository root
#   WORK_DIR          the platform's private copy of the sources (recreated)
#   NPM_CONFIG_CACHE  npm cache kept on the shared volume across runs
#   RESULT_ERROR      file receiving why the step failed (see lib.sh)
# Arguments: the install command as an argument list (spec.strategy.nodejs.
# installCommand split on spaces); none means "npm ci" (preferring the cache)
# when a lock file exists, else "npm install". The command is executed directly, never through a shell.
set -Eeuo pipefail
trap 'on_err "install ${PLATFORM:-}" $? $LINENO "$BASH_COMMAND"' ERR
# npm 7-9 "npm ERR!", npm 10 "npm error"; yarn "error ...".
ERROR_PATTERN='^npm (ERR!|error) |^error '

fail() { echo "install $PLATFORM: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${PLATFORM:?install: PLATFORM is not set}"
: "${SOURCE_DIR:?install: SOURCE_DIR is not set}"
: "${CONTEXT_DIR:?install: CONTEXT_DIR is not set}"
: "${WORK_DIR:?install: WORK_DIR is not set}"

# context_in DIR: the context directory resolved in DIR (the clone or the
# copy), which it must not leave: a symlink in the repository (ctx -> /) would
# run the install command, and later the build, on the pod's files.
context_in() {
  local root dir
  root="$(realpath -e -- "$1")" || fail "the directory $1 does not exist"
  dir="$(realpath -e -- "$1/$CONTEXT_DIR" 2>/dev/null)" ||
    fail "directory $CONTEXT_DIR (spec.source.contextDir) not found in the sources"
  [[ "$dir" == "$root" || "$dir" == "${root%/}/"* ]] ||
    fail "$CONTEXT_DIR (spec.source.contextDir) resolves to $dir, outside the cloned sources: a symlink in the repository must not lead out of it"
  [[ -d "$dir" ]] || fail "$CONTEXT_DIR (spec.source.contextDir) is not a directory"
  printf '%s' "$dir"
}
context_in "$SOURCE_DIR" >/dev/null

echo "install $PLATFORM: copying the sources to $WORK_DIR"
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
tar -C "$SOURCE_DIR" --exclude=./.git -cf - . | tar -C "$WORK_DIR" -xf -
context="$(context_in "$WORK_DIR")" || exit 1
cd "$context"

# The pod is pinned to a node of $PLATFORM; if the image ran emulated or was
# single-arch, native modules would silently be built for the wrong CPU.
if command -v node >/dev/null; then
  want="${PLATFORM#*/}"
  case "$want" in amd64) want=x64 ;; ppc64le) want=ppc64 ;; esac
  have="$(node -p process.arch)"
  if [[ "$have" != "$want" ]]; then
    echo "install $PLATFORM: WARNING: node reports architecture $have, expected $want: native modules will not match $PLATFORM" >&2
  fi
fi

if [[ -n "${TRUSTED_CA_BUNDLE:-}" && -s "$TRUSTED_CA_BUNDLE" ]]; then
  # node trusts its own bundled CAs plus NODE_EXTRA_CA_CERTS: keep what the
  # image put there (often the system store) and add the cluster's bundle.
  ca="${HOME:-/tmp}/.multiarch-build-node-ca.pem"
  {
    if [[ -n "${NODE_EXTRA_CA_CERTS:-}" && -r "$NODE_EXTRA_CA_CERTS" ]]; then cat -- "$NODE_EXTRA_CA_CERTS"; echo; fi
    cat -- "$TRUSTED_CA_BUNDLE"
  } > "$ca"
  export NODE_EXTRA_CA_CERTS="$ca"
fi

if (($# > 0)); then
  cmd=("$@")
elif [[ -f package-lock.json || -f npm-shrinkwrap.json ]]; then
  cmd=(npm ci)
  # The lock file pins every version, so the cache on the shared volume can be
  # trusted without asking the registry again: later runs fetch only what is new.
  export npm_config_prefer_offline=true
else
  cmd=(npm install)
fi
[[ -f package.json ]] || echo "install $PLATFORM: WARNING: no package.json in $CONTEXT_DIR" >&2
echo "install $PLATFORM: running: ${cmd[*]}"
logged "${cmd[@]}"
echo "install $PLATFORM: dependencies installed in $WORK_DIR/$CONTEXT_DIR"
