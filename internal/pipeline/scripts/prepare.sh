#!/usr/bin/env bash
# prepare: the first step of a run, before the clone. Marks the run's start
# on the shared volume: cleanup sweeps the directories of runs that are older
# than this mark and no longer clean up after themselves (deleted runs).
#
# Environment (declared by the generated step):
#   RUN_DIR  this run's directory on the shared volume
set -Eeuo pipefail
trap 'rc=$?; echo "prepare: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

: "${RUN_DIR:?prepare: RUN_DIR is not set}"
mkdir -p "$RUN_DIR"
touch "$RUN_DIR/.started"
echo "prepare: run directory ready"
