# The operator image: one static binary on an empty base, non-root.
#
# No base image is pulled (the machines that build this reach no container
# registry), so the binary is cross-compiled by the Go toolchain first, one per
# platform, into bin/<os>_<arch>/manager, and each platform's image is FROM
# scratch with that binary: no shell, no package manager, nothing to patch.
#   make docker-build IMG=...    # = go build for each of PLATFORMS, then
#   buildah build --platform linux/amd64,linux/arm64 --manifest IMG .
# produces one manifest list; no RUN step, so no emulation is involved.
FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH
LABEL org.opencontainers.image.title="multiarch-build-operator" \
      org.opencontainers.image.description="Builds multi-architecture container images natively, one node per CPU architecture" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY bin/${TARGETOS}_${TARGETARCH}/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
