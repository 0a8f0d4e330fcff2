# Multi-arch operator image. The builder runs on the build host's platform and
# cross-compiles for the target (no emulation), so
#   buildah build --platform linux/amd64,linux/arm64 --manifest IMG .
# produces one manifest list.
FROM --platform=$BUILDPLATFORM golang:1.25 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download

COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w" -o manager .

# distroless static: no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="multiarch-build-operator" \
      org.opencontainers.image.description="Builds multi-architecture container images natively, one node per CPU architecture" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /
COPY --from=builder /workspace/manager .
USER 65532:65532

ENTRYPOINT ["/manager"]
