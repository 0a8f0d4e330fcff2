#!/usr/bin/env bash
# maven: run the Maven goals once; the JVM bytecode is architecture-neutral and
# every platform's build task packages the same target/ directory.
#
# Environment (declared by the generated step):
#   SOURCE_DIR          the shared clone (target/ is written into it)
#   CONTEXT_DIR         directory of pom.xml, relative to the repository root
#   MAVEN_REPO          local repository kept on the shared volume across runs
#   MAVEN_SETTINGS_DIR  optional: mounted Secret holding settings.xml
#   RESULT_ERROR        file receiving why the step failed (see lib.sh)
# Arguments: the goals (spec.strategy.maven.goals), one argument each.
set -Eeuo pipefail
trap 'on_err "maven" $? $LINENO "$BASH_COMMAND"' ERR
ERROR_PATTERN='^\[ERROR\] '

fail() { echo "maven: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${SOURCE_DIR:?maven: SOURCE_DIR is not set}"
: "${CONTEXT_DIR:?maven: CONTEXT_DIR is not set}"
: "${MAVEN_REPO:?maven: MAVEN_REPO is not set}"
(($# > 0)) || fail "no goals given"

# A symlink in the repository (ctx -> /) must not take Maven, and the build
# after it, out of the cloned sources.
sources="$(realpath -e -- "$SOURCE_DIR")" || fail "the sources directory $SOURCE_DIR does not exist"
context="$(realpath -e -- "$SOURCE_DIR/$CONTEXT_DIR" 2>/dev/null)" ||
  fail "directory $CONTEXT_DIR (spec.source.contextDir) not found in the sources"
[[ "$context" == "$sources" || "$context" == "${sources%/}/"* ]] ||
  fail "$CONTEXT_DIR (spec.source.contextDir) resolves to $context, outside the cloned sources: a symlink in the repository must not lead out of it"
cd "$context" 2>/dev/null || fail "$CONTEXT_DIR (spec.source.contextDir) is not a directory"
[[ -f pom.xml ]] || echo "maven: WARNING: no pom.xml in $CONTEXT_DIR" >&2

opts=(--batch-mode --no-transfer-progress "-Dmaven.repo.local=$MAVEN_REPO")
if [[ -n "${MAVEN_SETTINGS_DIR:-}" ]]; then
  [[ -f "$MAVEN_SETTINGS_DIR/settings.xml" ]] ||
    fail "the Secret of spec.strategy.maven.settingsSecretRef has no settings.xml key"
  opts+=(-s "$MAVEN_SETTINGS_DIR/settings.xml")
fi
command -v mvn >/dev/null || fail "mvn not found in the Maven image (spec.strategy.maven.image)"
mkdir -p "$MAVEN_REPO"
echo "maven: running mvn $* in $CONTEXT_DIR"
# Maven prints its errors on standard output.
rc=0
mvn "${opts[@]}" "$@" | tee -a "$STEP_STDERR" || rc=$?
((rc == 0)) || on_err maven "$rc" "$LINENO" mvn
echo "maven: done"
