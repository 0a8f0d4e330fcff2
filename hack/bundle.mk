# OLM bundle targets. Included from the Makefile: `include hack/bundle.mk`.
# operator-sdk cannot be built from the Go module proxy, so hack/bundlegen
# does what `operator-sdk generate bundle` would: it renders config/manifests
# (CSV base + config/default + config/samples) with the kustomize Go API and
# writes bundle/ and bundle.Dockerfile; its tests run operator-framework/api's
# validators on the result.

##@ Bundle (OLM)

# VERSION is the operator version of the bundle (semver, no leading v).
VERSION ?= 0.1.0
# CHANNELS and DEFAULT_CHANNEL follow OLM's channel naming (candidate, fast, stable).
CHANNELS ?= candidate
DEFAULT_CHANNEL ?= candidate
BUNDLE_IMG ?= quay.io/multiarch-build/multiarch-build-operator-bundle:v$(VERSION)

.PHONY: bundle
bundle: manifests ## Generate the OLM bundle (bundle/, bundle.Dockerfile) from config/ and validate it.
	go run ./hack/bundlegen -version $(VERSION) -image $(IMG) -channels $(CHANNELS) -default-channel $(DEFAULT_CHANNEL)
	go test ./hack/bundlegen/ -count=1

.PHONY: bundle-validate
bundle-validate: ## Validate bundle/ (operatorframework suite: 0 errors, 0 warnings) and check it is up to date.
	go test ./hack/bundlegen/ -count=1 -v -run 'TestBundle|TestDescriptors|TestCSV'

.PHONY: bundle-build
bundle-build: ## Build the bundle image.
ifeq ($(CONTAINER_TOOL),buildah)
	buildah build -f bundle.Dockerfile -t $(BUNDLE_IMG) .
else
	$(CONTAINER_TOOL) build -f bundle.Dockerfile -t $(BUNDLE_IMG) .
endif

.PHONY: bundle-push
bundle-push: ## Push the bundle image.
ifeq ($(CONTAINER_TOOL),buildah)
	buildah push $(BUNDLE_IMG) docker://$(BUNDLE_IMG)
else
	$(CONTAINER_TOOL) push $(BUNDLE_IMG)
endif
