#!/usr/bin/env bash
# The proxied, private-CA, disconnected world of the proxy e2e story
# (test/e2e/proxy_test.go, `make test-e2e-proxy`), on the running local
# cluster:
#   - a forward proxy (Debian's tinyproxy) on SERVICE_IP:3129, its log at
#     ${STATE}/proxy-world/tinyproxy.log (one line per request: CONNECT
#     host:port for HTTPS, GET http://... for plain HTTP);
#   - pod egress blocked except through it: iptables in the host, for the
#     pods' bridge subnets (10.88.0.0/24, 10.88.1.0/24), rejects TCP to the
#     TLS registry (5771), the git daemon (9419), the test's git HTTP server
#     (9420) and, forwarded, to ports 80 and 443 of anything (the npm
#     registry). The plain-HTTP registry (5770: step images, the mirror) stays
#     direct and is in the test's noProxy, as internal mirrors usually are:
#     tinyproxy forwards one of containers/image's repeated Accept headers
#     only, which makes OCI index pulls through it fail. The proxy itself runs
#     in the host, so it reaches all of them;
#   - a second docker-registry over TLS on SERVICE_IP:5771, its certificate
#     signed by a private CA made here (openssl): ${STATE}/proxy-world/ca.crt.
#     Nothing in the cluster trusts it but what the test puts in the cluster's
#     trust configuration.
#   - OpenShift's Proxy, Image, ImageDigestMirrorSet and ImageTagMirrorSet
#     CRDs (openshift/api in the Go module cache), so that the operator,
#     restarted after, watches them.
# OpenShift's network operator (CNO), which computes the Proxy status and
# fills ConfigMaps labelled config.openshift.io/inject-trusted-cabundle, does
# not run here: the test writes both as CNO would.
#
#   hack/cluster/proxy-world.sh start|stop
# stop removes the iptables rules and stops the proxy and the TLS registry
# (the CRDs stay: the operator only reads them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

W="${STATE}/proxy-world"
PROXY_PORT="${MAB_PROXY_PORT:-3129}"
TLS_PORT="${MAB_TLS_REGISTRY_PORT:-5771}"
GIT_HTTP_PORT="${MAB_GIT_HTTP_PORT:-9420}"
TAG=mab-proxy-world

rules() { # -A|-D
  local s
  for s in "${NODE_SUBNET[@]}"; do
    echo INPUT -s "$s" -d "${SERVICE_IP}/32" -p tcp -m multiport --dports "${TLS_PORT},${GIT_PORT},${GIT_HTTP_PORT}" -j REJECT -m comment --comment "$TAG"
    echo FORWARD -s "$s" -p tcp -m multiport --dports 80,443 -j REJECT -m comment --comment "$TAG"
  done
}

case "${1:-}" in
start)
  command -v tinyproxy >/dev/null || die "tinyproxy is not installed: hack/cluster/install-deps.sh"
  mkdir -p "$W" "${W}/registry"
  if [ ! -f "${W}/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mab private CA" \
      -keyout "${W}/ca.key" -out "${W}/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=${SERVICE_IP}" -keyout "${W}/tls.key" -out "${W}/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$SERVICE_IP" > "${W}/ext.cnf"
    openssl x509 -req -in "${W}/tls.csr" -CA "${W}/ca.crt" -CAkey "${W}/ca.key" -CAcreateserial -days 3650 \
      -extfile "${W}/ext.cnf" -out "${W}/tls.crt" 2>/dev/null
  fi
  cat > "${W}/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: "${W}/registry"}
  delete: {enabled: true}
http:
  addr: "0.0.0.0:${TLS_PORT}"
  tls: {certificate: "${W}/tls.crt", key: "${W}/tls.key"}
YML
  start tls-registry /usr/bin/docker-registry serve "${W}/registry.yml"
  cat > "${W}/tinyproxy.conf" <<CONF
Port ${PROXY_PORT}
Listen 0.0.0.0
Timeout 600
LogFile "${W}/tinyproxy.log"
LogLevel Info
MaxClients 100
Allow 127.0.0.1
Allow 10.88.0.0/16
DisableViaHeader Yes
CONF
  # No ConnectPort line: CONNECT to any port (the TLS registry's is 5771).
  start tinyproxy tinyproxy -d -c "${W}/tinyproxy.conf"
  wait_for "tinyproxy" 20 curl -fsS -o /dev/null -x "http://127.0.0.1:${PROXY_PORT}" "http://${REGISTRY}/v2/"
  wait_for "TLS registry" 20 curl -fsS -o /dev/null --cacert "${W}/ca.crt" "https://${SERVICE_IP}:${TLS_PORT}/v2/"
  rules | while read -r chain rest; do
    # shellcheck disable=SC2086
    iptables -C "$chain" $rest 2>/dev/null || iptables -I "$chain" $rest
  done
  dir=$(cd "${ROOT}" && go list -m -f '{{.Dir}}' github.com/openshift/api)
  for n in proxies images imagedigestmirrorsets imagetagmirrorsets; do
    kc apply -f "$(ls "${dir}"/config/v1/zz_generated.crd-manifests/*_01_${n}.crd.yaml)" >/dev/null
  done
  log "proxy world up: proxy http://${SERVICE_IP}:${PROXY_PORT}, TLS registry ${SERVICE_IP}:${TLS_PORT} (CA ${W}/ca.crt), pod egress only through the proxy"
  ;;
stop)
  rules | while read -r chain rest; do
    # shellcheck disable=SC2086
    while iptables -C "$chain" $rest 2>/dev/null; do iptables -D "$chain" $rest; done
  done
  stop tinyproxy
  stop tls-registry
  log "proxy world down (rules removed)"
  ;;
*) die "usage: $0 start|stop" ;;
esac
