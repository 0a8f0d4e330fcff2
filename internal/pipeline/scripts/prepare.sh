#!/usr/bin/env bash
# prepare: the first step of a run, before the clone, as root with CHOWN as
# its only capability. Creates the run's directories and the caches on the
# shared volume, hands them to the user the tool steps run as (they run as
# non-root: clone, install, maven and cleanup write only there), and marks the
# run's start: cleanup sweeps the directories of runs older than this mark
# that did not clean up after themselves (deleted runs).
#
# Environment (declared by the generated step):
#   RUNS_DIR    the shared volume's runs/ directory
#   CACHE_DIR   the shared volume's cache/ directory
#   RUN_NAME    this run's directory name (the PipelineRun name)
#   ARCHES      the run's architectures, space-separated
#   TOOL_UID    the tool steps' user; 0: they run as root, nothing to hand over
#   RESULT_ERROR  file receiving why the step failed (see lib.sh)
set -Eeuo pipefail
trap 'on_err "prepare" $? $LINENO "$BASH_COMMAND"' ERR

fail() { echo "prepare: ERROR: $*" >&2; step_failed "$*"; exit 1; }
: "${RUNS_DIR:?prepare: RUNS_DIR is not set}"
: "${CACHE_DIR:?prepare: CACHE_DIR is not set}"
: "${RUN_NAME:?prepare: RUN_NAME is not set}"
: "${TOOL_UID:?prepare: TOOL_UID is not set}"
[[ "$RUN_NAME" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || fail "refusing run name '$RUN_NAME'"
[[ "$TOOL_UID" =~ ^[0-9]+$ ]] || fail "TOOL_UID '$TOOL_UID' is not a user ID"

run="$RUNS_DIR/$RUN_NAME"
# index/: the build tasks' index steps (root) write their digests there;
# made here, and handed over with the run, so that cleanup (a tool step)
# may remove what they wrote.
mkdir -p "$run/source" "$run/index" "$CACHE_DIR/npm" "$CACHE_DIR/m2"
own=("$run" "$run/source" "$run/index")
for arch in ${ARCHES:-}; do
  [[ "$arch" =~ ^[a-z0-9]+$ ]] || fail "refusing architecture '$arch'"
  mkdir -p "$run/arch/$arch"
  own+=("$run/arch" "$run/arch/$arch")
done
# Every platform's build task of a Containerfile build runs prepare at the
# same time. Root here has no DAC_OVERRIDE: once another prepare handed the
# run's directory over, this one cannot write into it, and need not: the
# mark is there (it is made before the hand-over).
touch "$run/.started" 2>/dev/null || [[ -e "$run/.started" ]] || fail "cannot mark the run's start in $run"

if [[ "$TOOL_UID" != 0 ]]; then
  handover() {
    chown "$@" || fail "cannot hand $* to user $TOOL_UID: a volume that forces its owner (an EFS access point?) needs the operator's --tool-steps-user=0"
  }
  # What this step made (not recursively: another platform's task may be
  # writing into the run's directory already, its clone's files coming and
  # going under a walk), and runs/ itself, where cleanup deletes the run.
  handover "$TOOL_UID:0" "${own[@]}" "$run/.started"
  handover "$TOOL_UID:0" "$RUNS_DIR"
  # The caches: only when they are not the user's yet (a large cache is
  # walked once, not on every run).
  for cache in "$CACHE_DIR" "$CACHE_DIR/npm" "$CACHE_DIR/m2"; do
    if [[ "$(stat -c %u "$cache")" != "$TOOL_UID" ]]; then
      handover -R "$TOOL_UID:0" "$cache"
    fi
  done
fi
echo "prepare: run directory ready (tool steps run as user $TOOL_UID)"
