#!/usr/bin/env bash
# Builds Kubernetes and etcd binaries from the Go module proxy (setup-envtest's
# downloads are unreachable offline). Binaries are cached outside the work tree,
# keyed by version, and linked into bin/; a second run rebuilds nothing.
#
#   hack/build-kube.sh                      # kube-apiserver + etcd (envtest)
#   hack/build-kube.sh kube-apiserver kube-scheduler kube-controller-manager kubelet etcd
#   hack/build-kube.sh kubectl              # also supported (the local cluster uses it when none is installed)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/bin"
KUBE_DIR="${CACHE}/kube-${KUBE_VERSION}"
ETCD_DIR="${CACHE}/etcd-${ETCD_VERSION}"

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(kube-apiserver etcd)

mkdir -p "$BIN" "$KUBE_DIR" "$ETCD_DIR"

log() { echo "build-kube: $*" >&2; }

build_kube() {
  local missing=()
  for b in "$@"; do [ -x "${KUBE_DIR}/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  log "building ${missing[*]} ${KUBE_VERSION} (several minutes on 2 cores)"
  local mod; mod="$(mktemp -d)"
  trap 'rm -rf "$mod"' RETURN
  # The kubernetes module points its staging modules at ./staging; a throwaway
  # module replaces each with the published k8s.io/<m> v0.<minor>.<patch>.
  local gomod
  gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -n "$gomod" ] || { log "cannot download k8s.io/kubernetes@${KUBE_VERSION}"; return 1; }
  local staging="v0.${KUBE_VERSION#v1.}"
  {
    echo "module kubebuild"
    echo "go 1.24"
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    grep -oE '^[[:space:]]*k8s.io/[a-z0-9-]+ => \./staging/src/k8s.io/[a-z0-9-]+' "$gomod" |
      awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } > "$mod/go.mod"
  printf 'package main\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\nfunc main(){}\n' > "$mod/main.go"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || true)
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${KUBE_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=${date} -X ${p}.gitCommit=0000000000000000000000000000000000000000"
  done
  for b in "${missing[@]}"; do
    (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${ld}" -o "${KUBE_DIR}/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "${KUBE_DIR}/$b.tmp" "${KUBE_DIR}/$b"
    log "built ${KUBE_DIR}/$b"
  done
}

build_etcd() {
  [ -x "${ETCD_DIR}/etcd" ] && return 0
  log "building etcd ${ETCD_VERSION}"
  local mod; mod="$(mktemp -d)"
  trap 'rm -rf "$mod"' RETURN
  printf 'module etcdbuild\ngo 1.24\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$mod/go.mod"
  printf 'package main\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\nfunc main(){}\n' > "$mod/main.go"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || true)
  (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${ETCD_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "${ETCD_DIR}/etcd.tmp" "${ETCD_DIR}/etcd"
  log "built ${ETCD_DIR}/etcd"
}

kube=()
for b in "${want[@]}"; do
  case "$b" in
    etcd) build_etcd; ln -sf "${ETCD_DIR}/etcd" "${BIN}/etcd" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl) kube+=("$b") ;;
    *) log "unknown binary $b"; exit 2 ;;
  esac
done
if [ ${#kube[@]} -gt 0 ]; then
  build_kube "${kube[@]}"
  for b in "${kube[@]}"; do ln -sf "${KUBE_DIR}/$b" "${BIN}/$b"; done
fi
log "ready in ${BIN}: ${want[*]}"
