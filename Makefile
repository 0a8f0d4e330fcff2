# multiarch-build-operator

IMG ?= quay.io/multiarch-build/multiarch-build-operator:v0.1.0
PLATFORMS ?= linux/amd64,linux/arm64
CONTAINER_TOOL ?= buildah

CONTROLLER_GEN_VERSION ?= v0.20.0
KUSTOMIZE_VERSION ?= v5.7.1

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
KUBECTL ?= kubectl

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the markers (and hack/crdpatch: the rule on metadata.name).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=false paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/crdpatch config/crd/bases/build.multiarch.io_multiarchbuilds.yaml

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest-bins
envtest-bins: ## Build kube-apiserver and etcd from the Go module proxy into bin/ (cached).
	hack/build-kube.sh kube-apiserver etcd

.PHONY: test
test: manifests generate fmt vet envtest-bins ## Run unit and envtest tests against a real kube-apiserver.
	KUBEBUILDER_ASSETS=$(LOCALBIN) go test ./... -count=1

.PHONY: bench-sidebyside
bench-sidebyside: envtest-bins ## Side-by-side benchmark, this operator vs Shipwright v0.17.0 (hack/bench/sidebyside; ~15 min on 2 cores).
	hack/bench/build-shipwright.sh
	nice go run ./hack/bench/sidebyside -builds 500 -parallel 50 -rounds 3 $(BENCH_ARGS)

.PHONY: test-all
test-all: ## The one test command: install what a fresh Debian machine needs, then run every tier (unit, envtest, real builds, e2e).
	hack/test-all.sh

.PHONY: verify
verify: manifests generate ## Fail when generated files are out of date.
	git diff --exit-code -- api config

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary.
	go build -o bin/manager .

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the current kubeconfig.
	go run . $(RUN_ARGS)

comma := ,
.PHONY: build-platforms
build-platforms: ## Cross-compile the static manager for each of PLATFORMS into bin/<os>_<arch>/manager.
	@for p in $(subst $(comma), ,$(PLATFORMS)); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "go build $$os/$$arch -> bin/$${os}_$${arch}/manager"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags "-s -w" -o bin/$${os}_$${arch}/manager . || exit 1; \
	done

# BUILDAH: the buildah command, with storage options if needed (hack/cluster
# passes its cache's). PUSH_FLAGS: e.g. --tls-verify=false, --digestfile F.
BUILDAH ?= buildah
PUSH_FLAGS ?=
# The image's creation time is the commit's, so the same binaries give the
# same digest (a redeploy of unchanged code rolls nothing).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: docker-build
docker-build: build-platforms ## Build the multi-arch operator image (FROM scratch + the cross-compiled binaries; buildah or docker buildx).
ifeq ($(CONTAINER_TOOL),buildah)
	-@$(BUILDAH) manifest rm $(IMG) >/dev/null 2>&1
	$(BUILDAH) build --timestamp $(SOURCE_DATE_EPOCH) --platform $(PLATFORMS) --manifest $(IMG) .
else
	$(CONTAINER_TOOL) buildx build --platform $(PLATFORMS) -t $(IMG) .
endif

.PHONY: docker-push
docker-push: ## Push the operator image (the manifest list and every platform's image).
ifeq ($(CONTAINER_TOOL),buildah)
	$(BUILDAH) manifest push $(PUSH_FLAGS) --all $(IMG) docker://$(IMG)
else
	$(CONTAINER_TOOL) push $(IMG)
endif

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRD into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRD.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

# DEPLOY_ARGS: extra manager flags for the Deployment, e.g.
#   DEPLOY_ARGS="--builder-image=reg/buildah:1 --tekton-namespace=tekton-pipelines"
DEPLOY_ARGS ?=

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator (config/default, image IMG, extra flags DEPLOY_ARGS) into the cluster of the current kubeconfig.
	KUSTOMIZE=$(KUSTOMIZE) KUBECTL="$(KUBECTL)" hack/deploy.sh apply "$(IMG)" $(DEPLOY_ARGS)

.PHONY: undeploy
undeploy: kustomize ## Remove the operator.
	KUSTOMIZE=$(KUSTOMIZE) KUBECTL="$(KUBECTL)" hack/deploy.sh delete "$(IMG)"

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(LOCALBIN) ## Install controller-gen (pinned) into bin/.
	@test -x $(CONTROLLER_GEN) && $(CONTROLLER_GEN) --version | grep -q $(CONTROLLER_GEN_VERSION) || GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

.PHONY: kustomize
kustomize: $(LOCALBIN) ## Install kustomize (pinned) into bin/.
	@test -x $(KUSTOMIZE) || GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# Local two-node cluster, end-to-end tier and `make demo` (hack/cluster).
-include hack/cluster/demo.mk
# OLM bundle generation (hack/bundlegen).
-include hack/bundle.mk
