# --- lib.sh: failure reporting into the ERROR result (see scripts.go) ---
ERROR_PATTERN='^$.' ERROR_MATCH=first LOGGED_FAILED=""
STEP_STDERR="$(mktemp "${TMPDIR:-/tmp}/step-stderr.XXXXXX")"
# logged CMD [ARG]...: run CMD, its stderr also kept in STEP_STDERR.
logged() {
  local rc=0
  { "$@" 2>&1 1>&3 3>&- | tee -a "$STEP_STDERR" >&2; } 3>&1 || rc=$?
  ((rc == 0)) || LOGGED_FAILED="$1"
  return "$rc"
}
# step_failed DIAGNOSIS [FALLBACK]: write the ERROR result, as data.
step_failed() {
  [[ -n "${RESULT_ERROR:-}" ]] || return 0
  local tool="" line
  if [[ "$ERROR_MATCH" == last ]]; then
    tool="$(grep -E -e "$ERROR_PATTERN" -- "$STEP_STDERR" 2>/dev/null | tail -n 1)" || tool=""
  else
    tool="$(grep -m1 -E -e "$ERROR_PATTERN" -- "$STEP_STDERR" 2>/dev/null)" || tool=""
  fi
  if [[ -n "$tool" && -n "${1:-}" ]]; then
    line="$tool ($1)"
  elif [[ -n "$tool${1:-}" ]]; then
    line="$tool${1:-}"
  else
    line="$(grep -v -e '^[[:space:]]*$' -- "$STEP_STDERR" 2>/dev/null | tail -n 1)" || line=""
    [[ -n "$line" ]] || line="${2:-failed}"
  fi
  line="$(printf '%s' "$line" | LC_ALL=C tr '\000-\037\177' ' ')"
  printf '%s' "${line:0:300}" > "$RESULT_ERROR" 2>/dev/null || true
}
# on_err WHO STATUS LINE COMMAND: every script's ERR trap.
on_err() {
  local cmd="$4" msg
  [[ -z "$LOGGED_FAILED" ]] || cmd="$LOGGED_FAILED"
  msg="$1: FAILED (exit $2) at line $3: $cmd"
  echo "$msg" >&2
  step_failed "" "$msg"
  exit "$2"
}
# auth_file_of SECRET_DIR SCRATCH: the auth file of a mounted registry
# Secret for REGISTRY_AUTH_FILE: its .dockerconfigjson key, or its legacy
# .dockercfg key (the "auths" object alone) wrapped into SCRATCH/auth.json;
# nothing when it has neither.
auth_file_of() {
  if [[ -f "$1/.dockerconfigjson" ]]; then
    printf '%s' "$1/.dockerconfigjson"
  elif [[ -f "$1/.dockercfg" ]]; then
    mkdir -p "$2"
    { printf '{"auths":'; cat "$1/.dockercfg"; printf '}\n'; } > "$2/auth.json"
    printf '%s' "$2/auth.json"
  fi
}
# --- end of lib.sh ---
