#!/usr/bin/env bash
# preflight: right after the clone, before any architecture task starts,
# check that every image the Containerfile builds FROM offers every platform
# this run builds. A base image without linux/arm64 then fails the run in
# seconds, naming the image and the platform, instead of after an arm64 node
# booted and the build pulled it.
#
# What is read, as buildah build reads it: parser directives (escape), line
# continuations, comment lines, heredocs (skipped); the ARGs before the first
# FROM (defaults, overridden by the build arguments; TARGETPLATFORM,
# TARGETARCH, ... take this platform's value when declared; only declared
# ARGs are visible in FROM, as in buildah); FROM [--platform=P] IMAGE [AS
# NAME]. Only the stages the final stage needs are checked (buildah skips the
# others): through FROM <stage>, COPY/ADD --from=<stage|index> and RUN
# --mount=...,from=<stage>. FROM scratch and FROM <earlier stage> pass; an
# image named by COPY --from or RUN --mount from= is checked like a FROM.
# --platform=P is honoured ($BUILDPLATFORM, $TARGETPLATFORM: this platform,
# the builds are native). An image offers a platform when it is a manifest
# list / OCI index with an entry for it, or a single image whose
# configuration says that platform. Anything this script cannot resolve (an
# unsupported ${VAR...} form) is left to the build: logged, not failed.
#
# The registry is asked with buildah manifest add --all (manifest and
# configuration only, no layer), with the registries configuration and
# mirrors buildah reads in this pod (the cluster's registries.conf drop-in,
# when the operator mounts one, as in the build steps) and the credentials
# the build uses to pull (none: build-<arch> pulls anonymously; an
# REGISTRY_AUTH_DIR would be honoured). Short names resolve as buildah's
# manifest commands resolve them (docker.io/library/...).
#
# Environment (declared by the generated step; spec values only arrive here
# or as arguments, never in this text):
#   PLATFORMS          the platforms this run builds, space separated (linux/arm64 ...)
#   SOURCE_DIR         the shared clone
#   CONTEXT_DIR        build context, relative to SOURCE_DIR
#   CONTAINERFILE      Containerfile, relative to the build context
#   REGISTRY_AUTH_DIR  optional: a mounted pull Secret (.dockerconfigjson or .dockercfg)
#   BASES_PLATFORM     optional: the platform whose base images BASES_FILE records
#   BASES_FILE         optional: file receiving, for BASES_PLATFORM, every image
#                      its build pulls with the digests of the entries for that
#                      platform (IMAGE<TAB>PLATFORM<TAB>DIGEST[,DIGEST...], sorted,
#                      after a header line). Written only when every such image
#                      was read and the Containerfile adds nothing from a URL:
#                      with the commit and the build arguments it is the key
#                      under which build.sh reuses an image built before.
#   RESULT_ERROR       file receiving why the step failed (see lib.sh)
#   STORAGE_DRIVER, BUILDAH_ISOLATION: read by buildah itself (vfs, chroot)
# Arguments: build arguments NAME=VALUE.
set -Eeuo pipefail
trap 'on_err "preflight" $? $LINENO "$BASH_COMMAND"' ERR
# The diagnosis names the image first; buildah's error follows it.
ERROR_PATTERN='^$.' ERROR_MATCH=first

fail() { echo "preflight: ERROR: $*" >&2; step_failed "$*"; exit 1; }

: "${PLATFORMS:?preflight: PLATFORMS is not set}"
: "${SOURCE_DIR:?preflight: SOURCE_DIR is not set}"
: "${CONTEXT_DIR:?preflight: CONTEXT_DIR is not set}"
: "${CONTAINERFILE:?preflight: CONTAINERFILE is not set}"

# The Containerfile, resolved as build.sh resolves it (inside the sources).
sources="$(realpath -e -- "$SOURCE_DIR")" || fail "the sources directory $SOURCE_DIR does not exist"
inside_sources() { [[ "$1" == "$sources" || "$1" == "${sources%/}/"* ]]; }
context="$(realpath -e -- "$SOURCE_DIR/$CONTEXT_DIR" 2>/dev/null)" ||
  fail "directory $CONTEXT_DIR (spec.source.contextDir) not found in the sources"
inside_sources "$context" ||
  fail "$CONTEXT_DIR (spec.source.contextDir) resolves to $context, outside the cloned sources: a symlink in the repository must not lead out of it"
containerfile="$(realpath -e -- "$context/$CONTAINERFILE" 2>/dev/null)" ||
  fail "$CONTAINERFILE (spec.strategy.containerfile) not found in $CONTEXT_DIR"
inside_sources "$containerfile" ||
  fail "$CONTAINERFILE (spec.strategy.containerfile) resolves to $containerfile, outside the cloned sources: a symlink in the repository must not lead out of it"
[[ -f "$containerfile" ]] || fail "$CONTAINERFILE (spec.strategy.containerfile) in $CONTEXT_DIR is not a regular file"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# No key unless this run writes one (a file left by another step is not).
[[ -z "${BASES_FILE:-}" ]] || rm -f -- "$BASES_FILE"

if [[ -n "${REGISTRY_AUTH_DIR:-}" ]]; then
  REGISTRY_AUTH_FILE="$(auth_file_of "$REGISTRY_AUTH_DIR" "$tmp")"
  [[ -n "$REGISTRY_AUTH_FILE" ]] || fail "the pull Secret has neither a .dockerconfigjson key nor a .dockercfg key"
  export REGISTRY_AUTH_FILE
fi

declare -A build_args=()
for arg in "$@"; do
  [[ "$arg" == *=* ]] || continue
  build_args["${arg%%=*}"]="${arg#*=}"
done

# --- the Containerfile as logical lines --------------------------------------
escape='\'
lines=() linenos=()
directives=1 cur="" start=0 n=0 heredoc="" heredoc_dash=0
heredoc_re="^[[:space:]]*([Rr][Uu][Nn]|[Cc][Oo][Pp][Yy]|[Aa][Dd][Dd])[[:space:]].*<<(-?)[\"']?([A-Za-z_][A-Za-z0-9_]*)"
while IFS= read -r raw || [[ -n "$raw" ]]; do
  n=$((n + 1))
  raw="${raw%$'\r'}"
  if [[ -n "$heredoc" ]]; then
    probe="$raw"
    if ((heredoc_dash)); then probe="${probe#"${probe%%[!$'\t']*}"}"; fi
    if [[ "$probe" == "$heredoc" ]]; then heredoc=""; fi
    continue
  fi
  if ((directives)); then
    if [[ "$raw" =~ ^[[:space:]]*#[[:space:]]*([A-Za-z]+)[[:space:]]*=[[:space:]]*([^[:space:]]+)[[:space:]]*$ ]]; then
      [[ "${BASH_REMATCH[1],,}" != escape ]] || escape="${BASH_REMATCH[2]}"
      continue
    fi
    directives=0
  fi
  [[ "$raw" =~ ^[[:space:]]*# ]] && continue
  if [[ -z "$cur" ]]; then
    [[ "$raw" =~ ^[[:space:]]*$ ]] && continue
    start=$n
  fi
  trimmed="${raw%"${raw##*[![:space:]]}"}"
  if [[ "$trimmed" == *"$escape" ]]; then
    cur+="${trimmed%"$escape"}"
    continue
  fi
  cur+="$raw"
  lines+=("$cur") linenos+=("$start")
  # A heredoc (RUN <<EOF, COPY <<EOF ...): its body is not instructions.
  if [[ "$cur" =~ $heredoc_re ]]; then
    heredoc="${BASH_REMATCH[3]}" heredoc_dash=$((${#BASH_REMATCH[2]}))
  fi
  cur=""
done < "$containerfile"
[[ -z "$cur" ]] || { lines+=("$cur"); linenos+=("$start"); }

# --- instructions: global ARGs, stages ----------------------------------------
# token: one shell-like word (quoted parts kept).
token_re="^[[:space:]]*((\"([^\"\\\\]|\\\\.)*\"|'[^']*'|[^[:space:]\"']+)+)"
global_args=()   # NAME or NAME=VALUE, in order
remote_add=""    # where an ADD names a URL
stage_names=() stage_bases=() stage_platforms=() stage_lines=() stage_froms=()
for i in "${!lines[@]}"; do
  line="${lines[$i]}"
  [[ "$line" =~ ^[[:space:]]*([A-Za-z]+)([[:space:]]+(.*))?$ ]] || continue
  instr="${BASH_REMATCH[1],,}" rest="${BASH_REMATCH[3]}"
  words=()
  while [[ "$rest" =~ $token_re ]]; do
    words+=("${BASH_REMATCH[1]}")
    rest="${rest:${#BASH_REMATCH[0]}}"
  done
  case "$instr" in
    arg)
      if ((${#stage_bases[@]} == 0)); then global_args+=(${words[@]+"${words[@]}"}); fi
      ;;
    from)
      platform="" base="" name=""
      for w in ${words[@]+"${words[@]}"}; do
        case "$w" in
          --platform=*) platform="${w#--platform=}" ;;
          --*) ;;
          *)
            if [[ -z "$base" ]]; then base="$w"
            elif [[ "${w,,}" != as ]]; then name="${w,,}"; fi
            ;;
        esac
      done
      if [[ -z "$base" ]]; then continue; fi # buildah's error, from the build
      stage_names+=("$name") stage_bases+=("$base") stage_platforms+=("$platform")
      stage_lines+=("${linenos[$i]}") stage_froms+=("")
      ;;
    copy | add | run)
      ((${#stage_bases[@]} > 0)) || continue
      if [[ "$instr" == add ]]; then
        # ADD <url>: content the commit does not pin (no image reuse).
        for w in ${words[@]+"${words[@]}"}; do
          [[ "$w" != --* ]] || continue
          if [[ "$w" =~ ^[\"\']?([A-Za-z][A-Za-z0-9+.-]*://|git@) ]]; then remote_add="line ${linenos[$i]}"; fi
        done
      fi
      for w in ${words[@]+"${words[@]}"}; do
        from=""
        case "$w" in
          --from=*) if [[ "$instr" != run ]]; then from="${w#--from=}"; fi ;;
          --mount=*)
            IFS=, read -r -a kvs <<< "${w#--mount=}"
            for kv in ${kvs[@]+"${kvs[@]}"}; do
              if [[ "$kv" == from=* ]]; then from="${kv#from=}"; fi
            done
            ;;
          --*) continue ;;
          *) break ;;
        esac
        [[ -z "$from" ]] || stage_froms[-1]+="$from ${linenos[$i]}"$'\n'
      done
      ;;
  esac
done
if ((${#stage_bases[@]} == 0)); then
  # buildah's own "no FROM statement found", from the build, says it best.
  echo "preflight: no FROM in $CONTAINERFILE: nothing to check, the build will tell"
  exit 0
fi

# --- variable expansion ---------------------------------------------------------
# expand WORD: EXPANDED = WORD with $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word}
# replaced from VARS (unset and undeclared are empty); quotes removed. Returns
# 1 for another form, which the build, not this script, will judge.
declare -A VARS=()
expand() {
  local s="$1" out="" name op word val
  while [[ -n "$s" ]]; do
    if [[ "$s" == "$escape"?* ]]; then
      out+="${s:1:1}" s="${s:2}"
    elif [[ "$s" =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)(:([-+])([^}\$]*))?\} ]]; then
      name="${BASH_REMATCH[1]}" op="${BASH_REMATCH[3]}" word="${BASH_REMATCH[4]}"
      val="${VARS[$name]-}"
      case "$op" in
        -) [[ -n "$val" ]] || val="$word" ;;
        +) [[ -z "$val" ]] || val="$word" ;;
      esac
      out+="$val" s="${s:${#BASH_REMATCH[0]}}"
    elif [[ "$s" =~ ^\$([A-Za-z_][A-Za-z0-9_]*) ]]; then
      out+="${VARS[${BASH_REMATCH[1]}]-}" s="${s:${#BASH_REMATCH[0]}}"
    elif [[ "$s" == '${'* ]]; then
      return 1
    elif [[ "$s" == \"* || "$s" == \'* ]]; then
      s="${s:1}" # a quote: dropped, its content kept
    else
      out+="${s:0:1}" s="${s:1}"
    fi
  done
  EXPANDED="$out"
}

# normalize P: os/arch[/variant], os defaulting to linux.
normalize() { local p="${1,,}"; [[ "$p" == */* ]] || p="linux/$p"; printf '%s' "$p"; }

# --- what each platform needs -----------------------------------------------------
# needs: "image<TAB>platform<TAB>where" lines, deduplicated.
declare -A needs=() key_needs=()
skipped=()
last=$((${#stage_bases[@]} - 1))
for target in $PLATFORMS; do
  os="${target%%/*}" rest="${target#*/}"
  arch="${rest%%/*}" variant=""
  [[ "$rest" != */* ]] || variant="${rest#*/}"
  declare -A auto=(
    [TARGETPLATFORM]="$target" [TARGETOS]="$os" [TARGETARCH]="$arch" [TARGETVARIANT]="$variant"
    [BUILDPLATFORM]="$target" [BUILDOS]="$os" [BUILDARCH]="$arch" [BUILDVARIANT]="$variant"
  )
  # The declared global ARGs: build argument, else this platform's value for
  # the automatic ones, else the default (expanded with the ARGs before it).
  VARS=()
  for a in ${global_args[@]+"${global_args[@]}"}; do
    name="${a%%=*}"
    if [[ -n "${build_args[$name]+x}" ]]; then
      VARS[$name]="${build_args[$name]}"
    elif [[ -n "${auto[$name]+x}" ]]; then
      VARS[$name]="${auto[$name]}"
    elif [[ "$a" == *=* ]]; then
      if expand "${a#*=}"; then VARS[$name]="$EXPANDED"; else VARS[$name]=""; fi
    else
      VARS[$name]=""
    fi
  done
  declare -A declared=()
  for k in "${!VARS[@]}"; do declared[$k]="${VARS[$k]}"; done

  # The stages the last one needs, and what they need from registries.
  declare -A seen=()
  queue=("$last")
  while ((${#queue[@]} > 0)); do
    s="${queue[0]}"
    queue=("${queue[@]:1}")
    [[ -z "${seen[$s]+x}" ]] || continue
    seen[$s]=1
    where="line ${stage_lines[$s]}"
    VARS=()
    for k in "${!declared[@]}"; do VARS[$k]="${declared[$k]}"; done
    if ! expand "${stage_bases[$s]}"; then
      skipped+=("FROM ${stage_bases[$s]} ($where)")
      continue
    fi
    base="$EXPANDED"
    [[ -n "$base" ]] || fail "FROM ${stage_bases[$s]} on $where of $CONTAINERFILE names no image for $target (an ARG without a value? only ARGs declared before the first FROM are visible in FROM)"
    want="$target"
    if [[ -n "${stage_platforms[$s]}" ]]; then
      for k in "${!auto[@]}"; do [[ -n "${VARS[$k]+x}" ]] || VARS[$k]="${auto[$k]}"; done
      if ! expand "${stage_platforms[$s]}"; then
        skipped+=("FROM --platform=${stage_platforms[$s]} ($where)")
        continue
      fi
      want="$(normalize "$EXPANDED")"
    fi
    dep=""
    for ((j = 0; j < s; j++)); do [[ "${base,,}" != "${stage_names[$j]}" ]] || dep=$j; done
    if [[ -n "$dep" ]]; then
      queue+=("$dep")
    elif [[ "${base,,}" != scratch ]]; then
      needs["$base"$'\t'"$want"$'\t'"$where"]=1
      [[ "$target" != "${BASES_PLATFORM:-}" ]] || key_needs["$base"$'\t'"$want"]=1
    fi
    while read -r from fromline; do
      [[ -n "$from" ]] || continue
      dep=""
      if [[ "$from" =~ ^[0-9]+$ ]]; then
        if ((from < s)); then dep="$from"; fi
      else
        for ((j = 0; j < s; j++)); do [[ "${from,,}" != "${stage_names[$j]}" ]] || dep=$j; done
      fi
      if [[ -n "$dep" ]]; then
        queue+=("$dep")
      elif [[ "$from" == *'$'* ]]; then
        skipped+=("--from=$from (line $fromline)")
      else
        needs["$from"$'\t'"$target"$'\t'"line $fromline"]=1
        [[ "$target" != "${BASES_PLATFORM:-}" ]] || key_needs["$from"$'\t'"$target"]=1
      fi
    done <<< "${stage_froms[$s]}"
  done
  unset seen auto declared
done
for sk in ${skipped[@]+"${skipped[@]}"}; do
  echo "preflight: not checked, left to the build: $sk"
done

# write_bases: BASES_FILE (see above), or nothing when an image is not
# known by digest. Called once every check passed.
write_bases() {
  [[ -n "${BASES_FILE:-}" && -n "${BASES_PLATFORM:-}" ]] || return 0
  local k image want out=""
  if ((${#skipped[@]} > 0)); then
    echo "preflight: no image reuse for $BASES_PLATFORM: not every image the build pulls is known here"
    return 0
  fi
  if [[ -n "$remote_add" ]]; then
    echo "preflight: no image reuse for $BASES_PLATFORM: ADD from a URL ($remote_add of $CONTAINERFILE), which the commit does not pin"
    return 0
  fi
  for k in ${key_needs[@]+"${!key_needs[@]}"}; do
    image="${k%%$'\t'*}" want="${k#*$'\t'}"
    if ! offered "$image" || ! has "$want"; then
      echo "preflight: no image reuse for $BASES_PLATFORM: $image is not known by digest for $want"
      return 0
    fi
    out+="$image"$'\t'"$want"$'\t'"$MATCHED"$'\n'
  done
  mkdir -p -- "$(dirname -- "$BASES_FILE")"
  { printf 'multiarch-build bases v1 %s\n' "$BASES_PLATFORM"; printf '%s' "$out" | LC_ALL=C sort; } > "$BASES_FILE.tmp"
  mv -f -- "$BASES_FILE.tmp" "$BASES_FILE"
}
if ((${#needs[@]} == 0)); then
  echo "preflight: no image to check (FROM scratch or earlier stages only)"
  write_bases
  exit 0
fi

# --- ask the registry ---------------------------------------------------------------
# offered IMAGE: the platforms IMAGE offers, os/arch[/variant]<TAB>digest
# per line, in OFFERED; returns 1 when the image cannot be read.
declare -A offered_cache=() unreadable=()
lists=0
offered() {
  local image="$1" line os="" arch="" variant="" digest="" in=0 out=""
  if [[ -n "${offered_cache[$image]+x}" ]]; then OFFERED="${offered_cache[$image]}"; return 0; fi
  [[ -z "${unreadable[$image]+x}" ]] || return 1
  # A list per image, in the task's own (emptyDir) storage: no rm between
  # two (each buildah run counts, under emulation most).
  lists=$((lists + 1))
  local list="localhost/multiarch-build-preflight:check-$lists"
  logged buildah manifest create "$list" >/dev/null
  # Reads the manifest (and, for a single image, its configuration), no layer.
  if ! logged buildah manifest add --all "$list" "docker://$image" >/dev/null; then
    unreadable[$image]=1
    return 1
  fi
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in
      '"digest": "sha256:'*) digest="${line#'"digest": "'}" digest="${digest%%\"*}" ;;
      '"platform": {'*) in=1 os="" arch="" variant="" ;;
      '"architecture": "'*) arch="${line#'"architecture": "'}" arch="${arch%%\"*}" ;;
      '"os": "'*) os="${line#'"os": "'}" os="${os%%\"*}" ;;
      '"variant": "'*) variant="${line#'"variant": "'}" variant="${variant%%\"*}" ;;
      '}'*) if ((in)); then out+="$os/$arch${variant:+/$variant}"$'\t'"$digest"$'\n'; in=0 digest=""; fi ;;
    esac
  done < <(buildah manifest inspect "$list")
  offered_cache[$image]="$out"
  OFFERED="$out"
}

# has PLATFORM: whether OFFERED has PLATFORM (arm64 with or without variant
# v8 are the same); MATCHED: the digests of OFFERED's entries of its
# os/architecture, sorted, comma separated.
has() {
  local want="$1" o d w_os w_arch w_var o_os o_arch o_var rest found=1
  w_os="${want%%/*}" rest="${want#*/}" w_arch="${rest%%/*}" w_var=""
  [[ "$rest" != */* ]] || w_var="${rest#*/}"
  MATCHED=""
  while IFS=$'\t' read -r o d; do
    [[ -n "$o" ]] || continue
    o_os="${o%%/*}" rest="${o#*/}" o_arch="${rest%%/*}" o_var=""
    [[ "$rest" != */* ]] || o_var="${rest#*/}"
    [[ "$o_os" == "$w_os" && "$o_arch" == "$w_arch" ]] || continue
    # Every entry of the architecture, whatever its variant, is in MATCHED:
    # which one buildah picks is buildah's business.
    [[ -z "$d" ]] || MATCHED+="${MATCHED:+,}$d"
    if [[ -z "$w_var" || "$w_var" == "$o_var" || ("$w_arch" == arm64 && "${w_var}${o_var}" == v8) ]]; then
      found=0
    fi
  done <<< "$OFFERED"
  if [[ -n "$MATCHED" ]]; then MATCHED="$(tr , '\n' <<< "$MATCHED" | LC_ALL=C sort -u | paste -sd, -)"; fi
  return "$found"
}

problems=()
checked=0
while IFS=$'\t' read -r image want where; do
  checked=$((checked + 1))
  if ! offered "$image"; then
    if [[ -n "${unreadable[$image]}" && "${unreadable[$image]}" != 1 ]]; then continue; fi
    unreadable[$image]=reported
    why="$(grep -E -e '^Error: |^error ' -- "$STEP_STDERR" 2>/dev/null | tail -n 1)" || why=""
    # Not a verdict: buildah's manifest commands do not resolve everything
    # its pulls do (buildah 1.28 applies no tag-only mirror to them), and a
    # registry may be down for a moment. The build pulls it and, if it
    # really cannot, says so in its own words.
    echo "preflight: cannot read $image ($where of $CONTAINERFILE) to check it offers $want; left to the build${why:+: $why}"
    continue
  fi
  if has "$want"; then
    echo "preflight: $image offers $want ($where)"
  else
    have="$(printf '%s' "$OFFERED" | cut -f1 | sort -u | paste -sd, -)"
    problems+=("image $image ($where of $CONTAINERFILE) offers no $want image (it offers ${have:-no platform})")
  fi
done < <(printf '%s\n' "${!needs[@]}" | sort -t $'\t' -k3,3V -k1,1 -k2,2)

if ((${#problems[@]} > 0)); then
  for p in "${problems[@]}"; do echo "preflight: ERROR: $p" >&2; done
  more=""
  ((${#problems[@]} == 1)) || more=" (and $((${#problems[@]} - 1)) more problem(s), see the log)"
  step_failed "preflight: ${problems[0]}$more"
  exit 1
fi
echo "preflight: every image offers what this run builds ($checked check(s) for $PLATFORMS)"
write_bases
