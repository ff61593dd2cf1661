# syntax=docker/dockerfile:1
#
# One image for every stage: `logtally -target=all|ingest|parser|aggregator|query`.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t ghcr.io/logtally/logtally:dev .
# (`task image` does this.) Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# The binary is static (CGO_ENABLED=0) and runs as distroless's nonroot user
# (65532); it writes nothing but -data.dir (/data, all-in-one mode only), so a
# read-only root filesystem works.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Module downloads first, so they are cached across source changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/logtally ./cmd/logtally \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="logtally" \
      org.opencontainers.image.description="Real-time per-IP log analytics on NATS JetStream" \
      org.opencontainers.image.source="https://github.com/logtally/logtally" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/logtally /logtally
# Data directory of the all-in-one mode (embedded NATS); mount a volume here.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /
USER nonroot:nonroot
# HTTP (API, ingest, health, metrics), gRPC query, TCP lines, syslog UDP+TCP
EXPOSE 8080/tcp 9090/tcp 8888/tcp 5514/tcp 5514/udp
VOLUME ["/data"]
ENTRYPOINT ["/logtally"]
