# The Helm chart's test module, included by the Makefile: `make test` vets
# and tests it (rendering, lint, schema, deploy/ equal to the chart, and an
# install into envtest with the Helm SDK).
TEST_MODULES += internal/testenv/chart

.PHONY: manifests-chart

## manifests-chart: render deploy/base/mtls-guard.yaml and deploy/cert-manager/certificates.yaml from deploy/chart/mtls-guard.
manifests-chart:
	cd internal/testenv/chart && go run ./cmd/render
