#!/usr/bin/env bash
# kubectl against the local cluster.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec "$KUBECTL" --kubeconfig "${KUBECONFIG_FILE}" "$@"
