#!/usr/bin/env bash
# maven: run the Maven goals once; the JVM bytecode is architecture-neutral and
# every platform's build task packages the same target/ directory.
#
# Environment (declared by the generated step):
#   SOURCE_DIR          the shared clone (target/ is written into it)
#   CONTEXT_DIR         directory of pom.xml, relative to the repository root
#   MAVEN_REPO          local repository kept on the shared volume across runs
#   MAVEN_SETTINGS_DIR  optional: mounted Secret holding settings.xml
#   TRUSTED_CA_BUNDLE   optional: the cluster's CA bundle (PEM), imported
#                       into a truststore with the JDK's CAs
#   HTTP(S)_PROXY, NO_PROXY  optional: the cluster's proxy (a global settings.xml)
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

# The cluster's configuration (environment of the step, never this text):
# the JDK reads neither HTTPS_PROXY nor a PEM bundle, so the CA bundle is
# imported into a truststore (a copy of the JDK's, when there is one) and
# the proxy becomes a global settings.xml, which the user's settings.xml
# (-s) still overrides.
if [[ -n "${TRUSTED_CA_BUNDLE:-}" ]]; then
  [[ -s "$TRUSTED_CA_BUNDLE" ]] || fail "the cluster's CA bundle $TRUSTED_CA_BUNDLE is missing or empty"
  command -v keytool >/dev/null || fail "keytool not found in the Maven image: it is needed to trust the cluster's CA bundle"
  store="$HOME/cluster-truststore.p12"
  rm -f "$store"
  jdk_cacerts=""
  for c in "${JAVA_HOME:-/nonexistent}/lib/security/cacerts" /etc/ssl/certs/java/cacerts /etc/pki/java/cacerts; do
    if [[ -f "$c" ]]; then jdk_cacerts="$c"; break; fi
  done
  if [[ -n "$jdk_cacerts" ]]; then
    logged keytool -importkeystore -noprompt -srckeystore "$jdk_cacerts" -srcstorepass changeit \
      -destkeystore "$store" -deststoretype PKCS12 -deststorepass changeit >/dev/null
  fi
  mkdir -p "$HOME/cluster-ca"
  awk -v dir="$HOME/cluster-ca" '/-----BEGIN CERTIFICATE-----/{n++} n{print > (dir "/" n ".pem")}' "$TRUSTED_CA_BUNDLE"
  for pem in "$HOME"/cluster-ca/*.pem; do
    logged keytool -importcert -noprompt -alias "cluster-ca-$(basename "$pem" .pem)" -file "$pem" \
      -keystore "$store" -storetype PKCS12 -storepass changeit >/dev/null
  done
  export MAVEN_OPTS="${MAVEN_OPTS:-} -Djavax.net.ssl.trustStore=$store -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit"
  echo "maven: trusting the cluster's CA bundle ($(ls "$HOME"/cluster-ca | wc -l) certificates)"
fi
xml() { local v=$1; v=${v//&/&amp;}; v=${v//</&lt;}; v=${v//>/&gt;}; v=${v//\"/&quot;}; printf '%s' "$v"; }
proxy_xml() { # id protocol URL
  [[ "$3" =~ ^(https?)://(([^:@/]*)(:([^@/]*))?@)?([^:/]+)(:([0-9]+))?/?$ ]] || fail "cannot read the $2 proxy URL of the step's environment"
  local port=${BASH_REMATCH[8]:-}
  [[ -n "$port" ]] || { [[ "${BASH_REMATCH[1]}" == https ]] && port=443 || port=80; }
  printf '<proxy><id>%s</id><active>true</active><protocol>%s</protocol><host>%s</host><port>%s</port>' "$1" "$2" "$(xml "${BASH_REMATCH[6]}")" "$port"
  [[ -z "${BASH_REMATCH[3]}" ]] || printf '<username>%s</username><password>%s</password>' "$(xml "${BASH_REMATCH[3]}")" "$(xml "${BASH_REMATCH[5]}")"
  # Maven's nonProxyHosts: |-separated, * wildcards; NO_PROXY's .domain is *.domain.
  local np="" h
  IFS=, read -ra hosts <<< "${NO_PROXY:-${no_proxy:-}}"
  for h in "${hosts[@]}"; do
    [[ -n "$h" ]] || continue
    [[ "$h" == .* ]] && h="*$h"
    np+="${np:+|}$h"
  done
  printf '<nonProxyHosts>%s</nonProxyHosts></proxy>' "$(xml "$np")"
}
if [[ -n "${HTTPS_PROXY:-${https_proxy:-}}${HTTP_PROXY:-${http_proxy:-}}" ]]; then
  {
    printf '<settings><proxies>'
    [[ -z "${HTTPS_PROXY:-${https_proxy:-}}" ]] || proxy_xml cluster-https https "${HTTPS_PROXY:-${https_proxy:-}}"
    [[ -z "${HTTP_PROXY:-${http_proxy:-}}" ]] || proxy_xml cluster-http http "${HTTP_PROXY:-${http_proxy:-}}"
    printf '</proxies></settings>\n'
  } > "$HOME/cluster-settings.xml"
  opts+=(-gs "$HOME/cluster-settings.xml")
  echo "maven: using the cluster's proxy"
fi
mkdir -p "$MAVEN_REPO"
echo "maven: running mvn $* in $CONTEXT_DIR"
# Maven prints its errors on standard output.
rc=0
mvn "${opts[@]}" "$@" | tee -a "$STEP_STDERR" || rc=$?
((rc == 0)) || on_err maven "$rc" "$LINENO" mvn
echo "maven: done"
