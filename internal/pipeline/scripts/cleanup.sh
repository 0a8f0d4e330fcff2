#!/usr/bin/env bash
# cleanup: delete this run's directory from the shared volume (sources, per-
# platform copies and OCI archives). The caches next to it are kept.
#
# Environment (declared by the generated step):
#   RUNS_DIR  the directory holding every run's directory
#   RUN_NAME  this run's directory name (the PipelineRun name)
set -Eeuo pipefail
trap 'rc=$?; echo "cleanup: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

: "${RUNS_DIR:?cleanup: RUNS_DIR is not set}"
: "${RUN_NAME:?cleanup: RUN_NAME is not set}"
# Never let a surprising value widen the deletion.
[[ "$RUN_NAME" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || { echo "cleanup: ERROR: refusing run name '$RUN_NAME'" >&2; exit 1; }

if [[ -e "$RUNS_DIR/$RUN_NAME" ]]; then
  rm -rf -- "${RUNS_DIR:?}/$RUN_NAME"
  echo "cleanup: removed $RUN_NAME"
else
  echo "cleanup: nothing to remove for $RUN_NAME"
fi
