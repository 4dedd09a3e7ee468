# syntax=docker/dockerfile:1

# Base images are pinned to an exact version and digest (the tag says what
# it is, the digest which image it is); bumping one is a reviewed commit.
# The digests were taken from public Dockerfiles that pin the same tags, not
# pulled here (no registry access): check them with
# `crane digest golang:1.26.8-bookworm` when you bump.
#
# Build on the builder's own platform and cross-compile: CGO is off, so Go
# needs no emulation for other architectures (docker buildx --platform).
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Dependencies first, so that code changes reuse the downloaded modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/mtls-guard/mtls-guard/internal/version.Version=${VERSION}" \
      -o /out/mtls-guard .

# Static, shell-less, non-root base: nothing but the binary, CA roots and
# tzdata. `make image-ko` uses the same base.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
COPY --from=build /out/mtls-guard /mtls-guard
# Numeric, so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/mtls-guard"]
CMD ["serve"]
