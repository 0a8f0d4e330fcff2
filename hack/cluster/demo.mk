# Local two-architecture cluster, demo and end-to-end tests (hack/cluster).
# Included from the Makefile:  include hack/cluster/demo.mk

##@ Local cluster

.PHONY: demo
demo: ## Build what is missing, start the local amd64+arm64 cluster, run the operator, build the sample and print the pushed image.
	hack/cluster/demo.sh

.PHONY: demo-down
demo-down: ## Stop the local cluster and the operator (by PID; state and caches are kept).
	hack/cluster/down.sh

.PHONY: cluster-up
cluster-up: ## Start the local cluster only (etcd, control plane, Tekton, two nodes, registry, git server).
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: demo-down ## Same as demo-down.

.PHONY: test-e2e
test-e2e: ## End-to-end tests: real builds on the local cluster (starts and stops it unless it is already up).
	hack/cluster/build.sh
	go test -tags e2e ./test/e2e/ -v -count=1 -parallel 3 -timeout 40m

.PHONY: test-e2e-olm
test-e2e-olm: ## End-to-end, OLM pass: the operator installed from bundle/ as OLM installs it (hack/olminstall), its RBAC, a build across a bundle upgrade.
	hack/cluster/build.sh
	MAB_OPERATOR_MODE=olm go test -tags 'e2e olm' ./test/e2e/ -v -count=1 -timeout 20m \
	  -run 'TestOLM|TestOperatorRunsInClusterAsItsCSVIdentity|TestOpenShiftAdmissionIsOn|TestMetricsEndpointServesAuthenticatedScrapers'

.PHONY: test-e2e-capacity
test-e2e-capacity: ## End-to-end, capacity pass: amd64 node only, arm64 from the local Machine API (hack/machinesim): scale from zero, a zone without capacity, back to zero, a build failed with the Machine's error.
	hack/cluster/build.sh
	MAB_ARM64_NODE=machine go test -tags 'e2e capacity' ./test/e2e/ -v -count=1 -timeout 20m \
	  -run 'TestCapacity|TestMetricsEndpointServesAuthenticatedScrapers'

.PHONY: test-e2e-proxy
test-e2e-proxy: ## End-to-end, proxy pass (hack/cluster/proxy-world.sh): pod egress only through tinyproxy, push to a TLS registry of a private CA known only to the cluster's trust config, base image through an ImageTagMirrorSet; prints the proxy's log per kind of traffic.
	hack/cluster/build.sh
	go test -tags 'e2e proxy' ./test/e2e/ -v -count=1 -timeout 20m -run 'TestProxy|TestMetricsEndpointServesAuthenticatedScrapers'

.PHONY: test-argocd-full
test-argocd-full: ## Opt-in, not in CI: Argo CD's application controller and repo server (built once, minutes) sync a MultiArchBuild from git and judge it with docs/gitops.md's health check.
	hack/argocd/full/run.sh

.PHONY: test-e2e-chains
test-e2e-chains: ## End-to-end, Chains pass: Tekton Chains (built from the module proxy with cosign, hack/cluster/build-chains.sh) signs a two-arch build; cosign verifies the index's and each image's signature and SLSA provenance (deep inspection).
	hack/cluster/build.sh
	hack/cluster/build-chains.sh
	MAB_CHAINS=1 go test -tags 'e2e chains' ./test/e2e/ -v -count=1 -timeout 20m \
	  -run 'TestChains|TestMetricsEndpointServesAuthenticatedScrapers'
