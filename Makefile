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
manifests: controller-gen ## Generate CRDs and RBAC from the markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=false paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

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

.PHONY: docker-build
docker-build: ## Build the multi-arch operator image (buildah or docker buildx).
ifeq ($(CONTAINER_TOOL),buildah)
	buildah build --platform $(PLATFORMS) --manifest $(IMG) .
else
	$(CONTAINER_TOOL) buildx build --platform $(PLATFORMS) -t $(IMG) .
endif

.PHONY: docker-push
docker-push: ## Push the operator image.
ifeq ($(CONTAINER_TOOL),buildah)
	buildah manifest push --all $(IMG) docker://$(IMG)
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

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator into the cluster of the current kubeconfig.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

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
