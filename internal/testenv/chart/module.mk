# The Helm chart's test module, included by the Makefile: `make test` vets
# and tests it (rendering, lint, schema, deploy/ equal to the chart, and an
# install into envtest with the Helm SDK).
TEST_MODULES += internal/testenv/chart

.PHONY: manifests-chart

## manifests-chart: render deploy/base/mtls-guard.yaml and deploy/cert-manager/certificates.yaml from deploy/chart/mtls-guard.
manifests-chart:
	cd internal/testenv/chart && go run ./cmd/render

# image-ko builds the image without Docker: ko (from the Go module proxy)
# puts the same static binary on the Dockerfile's pinned distroless base and
# writes an OCI tarball. ko needs the base image from gcr.io once; offline,
# point KOCACHE at a directory where an earlier run cached it.
KO_VERSION    ?= v0.19.1
KO_BASE_IMAGE ?= gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
KO_PLATFORM   ?= linux/amd64

.PHONY: image-ko

$(BIN)/ko:
	GOBIN=$(BIN) go install github.com/google/ko@$(KO_VERSION)

## image-ko: the image without Docker, as the OCI tarball bin/image.tar (ko; the base image must be reachable or in KOCACHE).
image-ko: $(BIN)/ko
	KO_DOCKER_REPO=$(firstword $(subst :, ,$(IMAGE))) KO_DEFAULTBASEIMAGE=$(KO_BASE_IMAGE) \
	  GOFLAGS=-ldflags=-X=github.com/mtls-guard/mtls-guard/internal/version.Version=$(VERSION) \
	  $(BIN)/ko build --bare --push=false --tarball=$(BIN)/image.tar --tags=$(VERSION) --platform=$(KO_PLATFORM) --sbom=none .
