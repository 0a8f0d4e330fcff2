#!/usr/bin/env bash
# cleanup: delete this run's directory from the shared volume (sources and
# per-platform copies), and sweep the directories of older runs
# left behind (a PipelineRun deleted while it ran never reaches its cleanup).
# The caches next to them are kept.
#
# Which runs are "older": those whose directory was last changed before this
# run's start mark (written by its prepare step). Every run older than this
# one was superseded (cancelled) or finished, so nothing older still needs its
# directory; a newer run's directory is newer than the mark and stays.
#
# Environment (declared by the generated step):
#   RUNS_DIR  the directory holding every run's directory
#   RUN_NAME  this run's directory name (the PipelineRun name)
#   RESULT_ERROR  file receiving why the step failed (see lib.sh)
set -Eeuo pipefail
trap 'on_err "cleanup" $? $LINENO "$BASH_COMMAND"' ERR

: "${RUNS_DIR:?cleanup: RUNS_DIR is not set}"
: "${RUN_NAME:?cleanup: RUN_NAME is not set}"
# Never let a surprising value widen the deletion.
name_ok() { [[ "$1" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]]; }
name_ok "$RUN_NAME" || { echo "cleanup: ERROR: refusing run name '$RUN_NAME'" >&2; step_failed "refusing run name '$RUN_NAME'"; exit 1; }

mark="$RUNS_DIR/$RUN_NAME/.started"
if [[ -f "$mark" ]]; then
  while IFS= read -r -d '' dir; do
    old="${dir##*/}"
    [[ "$old" != "$RUN_NAME" ]] && name_ok "$old" || continue
    # Best effort: a directory this user may not delete (left by an older
    # operator version that ran as root) must not fail the run.
    if rm -rf -- "${RUNS_DIR:?}/$old" 2>/dev/null; then
      echo "cleanup: swept $old (an older run that left its directory behind)"
    else
      echo "cleanup: WARNING: could not remove $old (owned by another user); delete it from the volume by hand" >&2
    fi
  done < <(find "$RUNS_DIR" -mindepth 1 -maxdepth 1 -type d ! -newer "$mark" -print0)
fi

if [[ -e "$RUNS_DIR/$RUN_NAME" ]]; then
  rm -rf -- "${RUNS_DIR:?}/$RUN_NAME"
  echo "cleanup: removed $RUN_NAME"
else
  echo "cleanup: nothing to remove for $RUN_NAME"
fi
