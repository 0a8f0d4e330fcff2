#!/usr/bin/env bash
# clone: fetch one revision of a Git repository into the run's source directory
# and report the commit built.
#
# Every input comes from the environment declared by the generated step; no
# value of the MultiArchBuild spec is ever part of this text.
#   GIT_URL         repository URL (spec.source.git.url)
#   GIT_REVISION    branch, tag or commit SHA (spec.source.git.revision)
#   SOURCE_DIR      where to check out (emptied first: a retried task starts clean)
#   RESULT_COMMIT   file receiving the full commit SHA (Tekton task result)
#   RESULT_SOURCE_DATE_EPOCH  file receiving the commit's committer time, in
#                   seconds since the epoch (the builds' --timestamp)
#   RUN_DIR         optional: the run's directory on the shared volume, where
#                   the platforms that clone for themselves agree on the commit
#   RESULT_ERROR    file receiving why the step failed (see lib.sh)
#   TRUSTED_CA_BUNDLE  optional: the cluster's CA bundle (PEM), trusted with
#                   the image's own CAs; HTTP(S)_PROXY/NO_PROXY are git's
#   GIT_SECRET_DIR  optional: mounted Secret, kubernetes.io/basic-auth
#                   (username, password) or kubernetes.io/ssh-auth
#                   (ssh-privatekey, optional known_hosts)
set -Eeuo pipefail
trap 'on_err "clone" $? $LINENO "$BASH_COMMAND"' ERR
ERROR_PATTERN='^fatal: '

fail() { echo "clone: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${GIT_URL:?clone: GIT_URL is not set}"
: "${GIT_REVISION:?clone: GIT_REVISION is not set}"
: "${SOURCE_DIR:?clone: SOURCE_DIR is not set}"
: "${RESULT_COMMIT:?clone: RESULT_COMMIT is not set}"
: "${RESULT_SOURCE_DATE_EPOCH:?clone: RESULT_SOURCE_DATE_EPOCH is not set}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The shared volume may be owned by another UID than the one running git.
export GIT_CONFIG_COUNT=2
export GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
export GIT_CONFIG_KEY_1=advice.detachedHead GIT_CONFIG_VALUE_1=false
export GIT_TERMINAL_PROMPT=0

# The cluster's trust bundle (TRUSTED_CA_BUNDLE, mounted by the operator) is
# added to the image's own CAs: git's http.sslCAInfo replaces them, so both
# go into one file.
if [[ -n "${TRUSTED_CA_BUNDLE:-}" ]]; then
  [[ -s "$TRUSTED_CA_BUNDLE" ]] || fail "the cluster's CA bundle $TRUSTED_CA_BUNDLE is missing or empty"
  for sys in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [[ -f "$sys" ]]; then cat "$sys" > "$tmp/ca.pem"; break; fi
  done
  cat "$TRUSTED_CA_BUNDLE" >> "$tmp/ca.pem"
  export GIT_SSL_CAINFO="$tmp/ca.pem"
fi

if [[ -n "${GIT_SECRET_DIR:-}" ]]; then
  if [[ -f "$GIT_SECRET_DIR/ssh-privatekey" ]]; then
    # ssh refuses a key readable by others; the Secret volume is not ours to chmod.
    install -m 600 "$GIT_SECRET_DIR/ssh-privatekey" "$tmp/id"
    if [[ -f "$GIT_SECRET_DIR/known_hosts" ]]; then
      export GIT_SSH_COMMAND="ssh -i '$tmp/id' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='$GIT_SECRET_DIR/known_hosts'"
    else
      echo "clone: WARNING: the Git Secret has no known_hosts key; accepting the server's host key on first use" >&2
      export GIT_SSH_COMMAND="ssh -i '$tmp/id' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='$tmp/known_hosts'"
    fi
    echo "clone: using the SSH key of the Git Secret"
  elif [[ -f "$GIT_SECRET_DIR/password" ]]; then
    # git asks GIT_ASKPASS for the user name and the password; the helper
    # reads them from the Secret files, so they never appear in a URL or argv.
    # git asks it for every server it talks to, submodules included: it answers
    # only for the repository's own scheme and host (with port), the origin
    # below, and refuses any other so that git fails instead of sending the
    # Secret elsewhere. The origin is parsed here, as data, never evaluated.
    CLONE_CREDENTIAL_ORIGIN=""
    if [[ "$GIT_URL" =~ ^(https?)://([^/?#]*) ]]; then
      authority="${BASH_REMATCH[2]}"
      CLONE_CREDENTIAL_ORIGIN="${BASH_REMATCH[1]}://${authority##*@}"
    else
      echo "clone: WARNING: the basic-auth credentials of the Git Secret are only used with an https:// or http:// URL" >&2
    fi
    # git's prompts: "Username for 'https://host': " and
    # "Password for 'https://user@host': ".
    cat > "$tmp/askpass" <<'ASKPASS'
#!/bin/sh
q="'"
url="${1#*$q}"
url="${url%$q*}"
scheme="${url%%://*}"
host="${url#*://}"
host="${host##*@}"
if [ -z "$CLONE_CREDENTIAL_ORIGIN" ] || [ "$scheme://$host" != "$CLONE_CREDENTIAL_ORIGIN" ]; then
  echo "clone: not answering git's prompt \"$1\" with the credentials of spec.source.git.secretRef: they are only for ${CLONE_CREDENTIAL_ORIGIN:-an https:// or http:// spec.source.git.url}" >&2
  exit 1
fi
case "$1" in
  Username*) cat "$GIT_SECRET_DIR/username" ;;
  Password*) cat "$GIT_SECRET_DIR/password" ;;
  *) exit 1 ;;
esac
ASKPASS
    chmod 700 "$tmp/askpass"
    export GIT_ASKPASS="$tmp/askpass" GIT_SECRET_DIR CLONE_CREDENTIAL_ORIGIN
    echo "clone: using the basic-auth credentials of the Git Secret for ${CLONE_CREDENTIAL_ORIGIN:-no server}"
  else
    fail "the Git Secret mounted at $GIT_SECRET_DIR has neither ssh-privatekey (kubernetes.io/ssh-auth) nor username/password (kubernetes.io/basic-auth) keys"
  fi
fi

mkdir -p "$SOURCE_DIR"
# Empty it (it is a mount point, it cannot be removed); no find(1) in minimal images.
shopt -s dotglob nullglob
rm -rf -- "$SOURCE_DIR"/*
shopt -u dotglob nullglob
cd "$SOURCE_DIR"
logged git init -q .
# "--" before every value of the spec: a URL or revision starting with '-'
# (refused at admission) would still never be read as an option.
logged git remote add -- origin "$GIT_URL"

echo "clone: fetching $GIT_REVISION from $GIT_URL"
if git fetch -q --depth=1 -- origin "$GIT_REVISION" 2>"$tmp/shallow.err"; then
  logged git checkout -q --detach FETCH_HEAD
else
  # A short SHA, or a server that refuses to serve a commit by SHA: fetch
  # every branch and tag and resolve the revision locally.
  echo "clone: shallow fetch of $GIT_REVISION failed ($(head -n1 "$tmp/shallow.err")); fetching all branches and tags"
  logged git fetch -q --tags -- origin '+refs/heads/*:refs/remotes/origin/*' ||
    fail "cannot fetch $GIT_URL: check the URL and, for a private repository, spec.source.git.secretRef"
  resolved=""
  for ref in "refs/remotes/origin/$GIT_REVISION" "refs/tags/$GIT_REVISION" "$GIT_REVISION"; do
    if git rev-parse -q --verify "$ref^{commit}" > "$tmp/resolved"; then
      resolved="$(cat "$tmp/resolved")"
      break
    fi
  done
  [[ -n "$resolved" ]] || fail "revision $GIT_REVISION not found in $GIT_URL"
  logged git checkout -q --detach "$resolved"
fi

# RUN_DIR (a Containerfile build, whose build tasks clone for themselves):
# every platform builds the commit the run's first clone checked out, so a
# branch that moves between two clones cannot give a list of two commits.
# The first to link its commit to RUN_DIR/commit sets it (link(2) is atomic
# and fails on an existing name, on NFS too); the others check it out.
if [[ -n "${RUN_DIR:-}" ]]; then
  mine="$(git rev-parse HEAD)"
  aside="$RUN_DIR/.commit.$HOSTNAME.$$"
  printf '%s\n' "$mine" > "$aside"
  if ln -- "$aside" "$RUN_DIR/commit" 2>/dev/null; then
    echo "clone: $mine is the commit every platform of this run builds"
  else
    agreed="$(cat -- "$RUN_DIR/commit")"
    [[ "$agreed" =~ ^[0-9a-f]{40,64}$ ]] || fail "the run's commit file $RUN_DIR/commit holds '$agreed', not a commit"
    if [[ "$agreed" != "$mine" ]]; then
      echo "clone: $GIT_REVISION is at $mine now, but this run's other platforms build $agreed: checking that out"
      if ! git cat-file -e "$agreed^{commit}" 2>/dev/null; then
        logged git fetch -q --depth=1 -- origin "$agreed" ||
          fail "$GIT_REVISION moved while this run cloned it (from $agreed to $mine) and $GIT_URL does not serve $agreed by its ID: build again, or set spec.source.git.revision to a commit"
      fi
      logged git checkout -q --detach "$agreed"
    fi
  fi
  rm -f -- "$aside"
fi

if [[ -f .gitmodules ]]; then
  echo "clone: updating submodules"
  hint="check their URLs in .gitmodules"
  if [[ -n "${CLONE_CREDENTIAL_ORIGIN:-}" ]]; then
    hint+="; the credentials of spec.source.git.secretRef are only given to $CLONE_CREDENTIAL_ORIGIN"
  fi
  logged git submodule update -q --init --recursive --depth=1 || fail "cannot fetch the submodules of $GIT_URL: $hint"
fi

commit="$(git rev-parse HEAD)"
# The committer time (a shallow clone has it): the same commit always gives
# the same time, and a later commit a later one (as a rule: clocks differ).
epoch="$(git log -1 --format=%ct HEAD)"
[[ "$epoch" =~ ^[0-9]+$ ]] || fail "cannot read the commit time of $commit: '$epoch'"
printf '%s' "$commit" > "$RESULT_COMMIT"
printf '%s' "$epoch" > "$RESULT_SOURCE_DATE_EPOCH"
echo "clone: checked out $commit (committed at $epoch)"
