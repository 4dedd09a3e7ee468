# syntax=docker/dockerfile:1

# Build on the builder's own platform and cross-compile: CGO is off, so Go
# needs no emulation for other architectures (docker buildx --platform).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
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
# tzdata.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/mtls-guard /mtls-guard
# Numeric, so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/mtls-guard"]
CMD ["serve"]
