#!/usr/bin/env bash
# The one test command: sets up a fresh Debian machine and runs every tier.
#   1. install Debian packages (buildah, registry, qemu, node runtime)
#   2. build kube-apiserver and etcd from the Go module proxy (cached)
#   3. regenerate CRDs, RBAC and deepcopy, and fail if they differ from git
#   4. unit tests, envtest suites and the real build-script tests
#   5. the end-to-end tier on a local two-node cluster (when present): the
#      operator deployed with make deploy, then installed from the bundle as
#      OLM would (the OLM pass)
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
make envtest-bins

make manifests generate
if [ -d .git ] && ! git diff --quiet -- api config; then
  echo "generated files are out of date: run 'make generate manifests' and commit" >&2
  git diff --stat -- api config >&2
  exit 1
fi

go vet ./...
mkdir -p bin
set +e
KUBEBUILDER_ASSETS="$PWD/bin" go test ./... -count=1 -v -timeout 30m > bin/test.log 2>&1
status=$?
set -e
# Per-package results, the suites' own summaries, and every failure in full.
grep -E '^(ok|FAIL|---.FAIL|panic:|SUMMARY)|^[[:space:]]+---.FAIL' bin/test.log || true
if [ "$status" -ne 0 ]; then
  echo "unit/envtest tier failed (full log: bin/test.log); failures:" >&2
  grep -E -A25 -e '--- FAIL' bin/test.log | head -300 >&2 || true
fi
passed=$(grep -cE '^[[:space:]]*--- PASS' bin/test.log || true)
failed=$(grep -cE '^[[:space:]]*--- FAIL' bin/test.log || true)
skipped=$(grep -cE '^[[:space:]]*--- SKIP' bin/test.log || true)
echo "unit+envtest: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] || exit "$status"

if [ -d test/e2e ]; then
  make test-e2e
  make test-e2e-olm
  make test-e2e-capacity
  make test-e2e-proxy
fi
