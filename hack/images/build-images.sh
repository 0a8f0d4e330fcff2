#!/usr/bin/env bash
# Builds the local images the cluster's build pods run, from Debian packages
# (FROM scratch + the files of the .deb packages and their dependencies, for
# linux/amd64 and linux/arm64), into OCI archives in the cache. Nothing is
# pulled from a container registry. Rebuilt only when an archive is missing.
#
#   hack/images/build-images.sh            # all images
#   hack/images/build-images.sh git base   # some
#
# Images (tag = Debian package version family, never "latest"):
#   base      busybox-static                    FROM base of the samples/tests
#   git       git, bash, busybox, CA bundle     clone task (--git-image)
#   buildah   buildah, crun, bash, busybox      build/push tasks (--builder-image)
#   nodejs    nodejs (Debian) + npm (npm registry tarball), bash, busybox (--nodejs-image)
#   pause     static Go pause (sandbox image)
#   maven     maven 3.8.7, openjdk-17-jdk-headless, Debian's packaged Maven
#             plugins in /usr/share/maven-repo used offline (settings.xml),
#             bash, busybox (--maven-image)
#   jre       openjdk-17-jre-headless, busybox: FROM of the Maven kind's images
# Outputs: $IMAGES/<name>-<tag>-<arch>.tar (docker-archive, one platform each)
# and $IMAGES/tags (name=tag). maven and jre have their own directory (cache
# key) $IMAGES_MAVEN, so adding or changing them never rebuilds the others;
# they are built alongside the others (own apt download cache).
set -euo pipefail

CACHE="${MAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiarch-build-operator}"
IMAGES_VERSION=1               # bump to rebuild every image
IMAGES="${CACHE}/images-v${IMAGES_VERSION}"
IMAGES_MAVEN_VERSION=1         # bump to rebuild maven and jre only
IMAGES_MAVEN="${CACHE}/images-maven-v${IMAGES_MAVEN_VERSION}"
APTDIR="${CACHE}/apt"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARCHES=(amd64 arm64)
NPM_VERSION=10.9.2
declare -A TAG=([base]=1.35 [git]=2.39-r2 [buildah]=1.28-r3 [nodejs]=18-r3 [pause]=3.10 [maven]=3.8.7-r1 [jre]=17-r1)
MAVEN_GROUP="maven jre"   # images in $IMAGES_MAVEN
# The step scripts are bash and may use GNU options (tar --exclude, ...):
# GNU tools first, busybox only fills in what they lack.
GNU="coreutils tar findutils grep sed gzip"
declare -A PKGS=(
  [base]="busybox-static"
  [git]="git bash $GNU busybox-static"
  [buildah]="buildah crun bash $GNU busybox-static"
  [nodejs]="nodejs bash $GNU busybox-static"
  # what `mvn package` of a jar needs from Debian's Maven repository: the
  # plugins of the jar lifecycle (the versions Maven 3.8.7's lifecycle names
  # by default are packaged too), with their dependencies
  [maven]="maven openjdk-17-jdk-headless libmaven-resources-plugin-java libmaven-compiler-plugin-java libsurefire-java libmaven-jar-plugin-java libmaven-install-plugin-java bash $GNU busybox-static"
  [jre]="openjdk-17-jre-headless busybox-static"
)

log() { echo "build-images: $*" >&2; }
bh() { buildah --root "${CACHE}/buildah/root" --runroot "/run/mab-buildah-$(echo "$CACHE" | md5sum | cut -c1-8)" --storage-driver overlay "$@"; }

aptget() {
  local arch=$1; shift
  apt-get -q -o Dir::Etc::SourceList="${APTDIR}/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="${APTDIR}/${arch}/state" -o Dir::State::status="${APTDIR}/${arch}/state/status" \
    -o Dir::Cache="${APTDIR}/${arch}/cache${APT_CACHE_SUFFIX:-}" -o APT::Architecture="$arch" -o APT::Architectures::="$arch" \
    -o APT::Install-Recommends=false -o Debug::NoLocking=1 -o Acquire::Languages=none \
    -o APT::Get::AllowUnauthenticated=false -o APT::Sandbox::User=root "$@"
}

apt_init() {
  local arch=$1
  [ -f "${APTDIR}/${arch}/state/lists/.done" ] && return 0
  mkdir -p "${APTDIR}/${arch}/state/lists/partial" "${APTDIR}/${arch}/cache/archives/partial"
  : > "${APTDIR}/${arch}/state/status"
  cat > "${APTDIR}/sources.list" <<'SRC'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SRC
  aptget "$arch" update >/dev/null
  touch "${APTDIR}/${arch}/state/lists/.done"
}

# rootfs ARCH DIR PKG... : the files of PKG and all its dependencies, unpacked
# (no maintainer scripts: the images need no configuration beyond files).
rootfs() {
  local arch=$1 dir=$2; shift 2
  apt_init "$arch"
  mkdir -p "${APTDIR}/${arch}/cache${APT_CACHE_SUFFIX:-}/archives/partial"
  aptget "$arch" install -y --download-only "$@" >/dev/null
  rm -rf "$dir"; mkdir -p "$dir"
  local pkg ver f
  while read -r pkg ver; do
    f=$(ls "${APTDIR}/${arch}/cache${APT_CACHE_SUFFIX:-}/archives/${pkg}_${ver/:/%3a}_"*.deb)
    dpkg-deb -x "$f" "$dir"
  done < <(aptget "$arch" install -s "$@" | awk '/^Inst /{gsub(/[()]/,"",$3); print $2, $3}')
  rm -rf "$dir"/usr/share/{doc,man,info,locale,lintian,bash-completion} "$dir"/usr/lib/git-core/{git-gui*,git-instaweb} 2>/dev/null || true
  # what maintainer scripts would have made, and what every image needs
  mkdir -p "$dir"/{etc/ssl/certs,tmp,root,var/tmp,usr/local/bin,workspace}
  chmod 1777 "$dir/tmp" "$dir/var/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
  printf 'hosts: files dns\n' > "$dir/etc/nsswitch.conf"
  if [ -x "$dir/bin/busybox" ]; then
    local a
    for a in $(/bin/busybox --list-full); do
      [ -e "$dir/$a" ] || [ -L "$dir/$a" ] || [ -e "$dir/bin/${a##*/}" ] || [ -e "$dir/usr/bin/${a##*/}" ] || { mkdir -p "$dir/$(dirname "$a")"; ln -s /bin/busybox "$dir/$a"; }
    done
  fi
  [ -e "$dir/bin/sh" ] || ln -s busybox "$dir/bin/sh"
}

extra_git() { :; }
extra_base() {
  # FROM-scratch busybox only: drop everything but /bin/busybox and its links
  :
}
extra_buildah() {
  local dir=$1
  mkdir -p "$dir/etc/containers" "$dir/var/lib/containers"
  # chroot isolation and vfs storage, as quay.io/buildah/stable does in a pod
  cat > "$dir/etc/containers/storage.conf" <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
  # The local cluster's registry (hack/cluster/lib.sh: SERVICE_IP:REGISTRY_PORT)
  # serves plain HTTP: list it as insecure. No other registry is.
  cat > "$dir/etc/containers/registries.conf.d/50-mab-local.conf" <<CONF
[[registry]]
location = "${MAB_IMAGE_REGISTRY:-10.88.255.1:5770}"
insecure = true
CONF
}
extra_nodejs() {
  local dir=$1 tgz="${CACHE}/npm-${NPM_VERSION}.tgz"
  [ -f "$tgz" ] || curl -fsSL -o "$tgz" "https://registry.npmjs.org/npm/-/npm-${NPM_VERSION}.tgz"
  mkdir -p "$dir/usr/lib/node_modules/npm"
  tar -xzf "$tgz" -C "$dir/usr/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/bin/npx"
}

# Java, as the maintainer scripts would have set it up: the alternatives'
# links in /usr/bin, and the JRE's trust store (/etc/ssl/certs/java/cacerts,
# ca-certificates-java's job) made of the image's CA bundle by
# ca-certificates-java's own tool, run in the image (other architectures
# through qemu-user's binfmt, as the cluster's arm64 node).
java_setup() {
  local dir=$1 arch=$2 jh="/usr/lib/jvm/java-17-openjdk-$2" b
  for b in "$dir$jh"/bin/*; do ln -sfn "$jh/bin/${b##*/}" "$dir/usr/bin/${b##*/}"; done
  rm -rf "$dir$jh/jmods" "$dir$jh/man" "$dir$jh/demo"   # jlink's input, not needed to run or compile
  rm -rf "$dir/tmp/cas"; mkdir -p "$dir/tmp/cas" "$dir/etc/ssl/certs/java"
  awk -v d="$dir/tmp/cas" '/BEGIN CERT/{n++; f=sprintf("%s/ca-%03d.pem", d, n)} f{print > f} /END CERT/{close(f); f=""}' \
    "$dir/etc/ssl/certs/ca-certificates.crt"
  rm -f "$dir/etc/ssl/certs/java/cacerts"
  (cd "$dir/tmp/cas" && ls ./*.pem) | sed 's|^\./|+/tmp/cas/|' |
    chroot "$dir" /usr/bin/env -i LD_LIBRARY_PATH="$jh/lib" "$jh/bin/java" -Xmx64m -XX:-UsePerfData \
      -jar /usr/share/ca-certificates-java/ca-certificates-java.jar -storepass changeit >/dev/null
  rm -rf "$dir/tmp/cas"
  [ -s "$dir/etc/ssl/certs/java/cacerts" ] || { log "no Java trust store made for $arch"; return 1; }
}
extra_jre() { java_setup "$@"; }
extra_maven() {
  local dir=$1
  java_setup "$@"
  ln -sfn ../share/maven/bin/mvn "$dir/usr/bin/mvn"
  # Maven's global settings (/usr/share/maven/conf -> /etc/maven): Debian's
  # repository as the only remote one, read from disk
  cp "$HERE/maven-settings.xml" "$dir/etc/maven/settings.xml"
}

# outdir NAME: the cache directory of NAME's archives
outdir() { case " $MAVEN_GROUP " in *" $1 "*) echo "$IMAGES_MAVEN" ;; *) echo "$IMAGES" ;; esac; }

# image NAME ARCH: build $IMAGES/NAME-TAG-ARCH.tar
image() {
  local name=$1 arch=$2 out; out="$(outdir "$1")/$1-${TAG[$1]}-$2.tar"
  [ -f "$out" ] && return 0
  local dir; dir="$(outdir "$name")/rootfs/$name-$arch"
  log "building $name:${TAG[$name]} for linux/$arch"
  local env=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env HOME=/root)
  case "$name" in
    pause)
      rm -rf "$dir"; mkdir -p "$dir"
      CGO_ENABLED=0 GOARCH="$arch" go build -trimpath -ldflags "-s -w" -o "$dir/pause" "$HERE/pause/main.go"
      env=(--entrypoint '["/pause"]') ;;
    base)
      local tmp="${dir}.full"
      rootfs "$arch" "$tmp" ${PKGS[base]}
      rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"; chmod 1777 "$dir/tmp"
      cp "$tmp/bin/busybox" "$dir/bin/busybox"
      for a in $(/bin/busybox --list); do [ -e "$dir/bin/$a" ] || ln -s busybox "$dir/bin/$a"; done
      cp "$tmp/etc/passwd" "$tmp/etc/group" "$dir/etc/"; rm -rf "$tmp"
      env+=(--cmd /bin/sh) ;;
    *)
      rootfs "$arch" "$dir" ${PKGS[$name]}
      "extra_$name" "$dir" "$arch"
      if [ "$name" = jre ]; then env+=(--cmd /bin/sh); else env+=(--cmd /bin/bash); fi
      case "$name" in maven | jre) env+=(--env "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-$arch") ;; esac
      # Debian's node uses its built-in CA list; also trust the system bundle
      # (site proxies with their own CA are common, and are the case here).
      [ "$name" = nodejs ] && env+=(--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt --env NPM_CONFIG_UPDATE_NOTIFIER=false)
      [ "$name" = buildah ] && env+=(--env BUILDAH_ISOLATION=chroot --env STORAGE_DRIVER=vfs) ;;
  esac
  local c; c=$(bh from --quiet scratch)
  bh copy --quiet "$c" "$dir/" / >/dev/null
  bh config --os linux --arch "$arch" "${env[@]}" \
    --label org.opencontainers.image.source=https://github.com/multiarch-build/multiarch-build-operator \
    --label io.multiarch-build.image="$name" "$c"
  bh commit --quiet --rm "$c" "mab-local/$name-$arch:${TAG[$name]}" >/dev/null
  rm -f "$out.tmp"
  bh push --quiet "mab-local/$name-$arch:${TAG[$name]}" "docker-archive:$out.tmp:mab-local/$name:${TAG[$name]}"
  mv "$out.tmp" "$out"
  # the archive is the cache: drop the copy in buildah's storage, the rootfs
  # and archives of older tags
  bh rmi -f "mab-local/$name-$arch:${TAG[$name]}" >/dev/null 2>&1 || true
  rm -rf "$dir"
  local old
  for old in "$(outdir "$name")/$name"-*-"$arch".tar; do [ "$old" = "$out" ] || rm -f "$old"; done
}

mkdir -p "$IMAGES" "$IMAGES_MAVEN"
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(pause base git buildah nodejs $MAVEN_GROUP)
main=() mvn=()
for n in "${want[@]}"; do
  [ -n "${TAG[$n]:-}" ] || { log "unknown image $n"; exit 2; }
  case " $MAVEN_GROUP " in *" $n "*) mvn+=("$n") ;; *) main+=("$n") ;; esac
done
# The Maven group runs alongside the others, with its own apt download cache
# (the package lists, read only, are shared: made first).
mvnjob=
if [ ${#mvn[@]} -gt 0 ]; then
  for a in "${ARCHES[@]}"; do apt_init "$a"; done
  (
    APT_CACHE_SUFFIX=-maven
    s=$(date +%s)
    for n in "${mvn[@]}"; do for a in "${ARCHES[@]}"; do image "$n" "$a"; done; done
    log "${mvn[*]} ready in $(( $(date +%s) - s ))s"
  ) &
  mvnjob=$!
fi
for n in "${main[@]}"; do
  for a in "${ARCHES[@]}"; do image "$n" "$a"; done
done
[ -z "$mvnjob" ] || wait "$mvnjob" || { log "building ${mvn[*]} failed"; exit 1; }
# name=tag, each directory its own images
tags() {
  local dir=$1 n; : > "${dir}/tags.tmp"
  for n in "${!TAG[@]}"; do [ "$(outdir "$n")" != "$dir" ] || echo "$n=${TAG[$n]}" >> "${dir}/tags.tmp"; done
  mv "${dir}/tags.tmp" "${dir}/tags"
}
tags "$IMAGES"; tags "$IMAGES_MAVEN"
log "ready in ${IMAGES} and ${IMAGES_MAVEN}"
