# Prometheus for the plaintext-evidence tests, built from the Go module
# proxy into bin/ like the control plane. The tests use its HTTP API and a
# static scrape config only: remove_all_sd leaves out the cloud service
# discoveries (a much smaller build), and the web UI's assets are not
# embedded (no builtinassets tag).
PROMETHEUS_MODULE := internal/testenv/prometheus

testbin: $(BIN)/prometheus

$(BIN)/prometheus:
	cd $(PROMETHEUS_MODULE) && go build -tags remove_all_sd -o $@ github.com/prometheus/prometheus/cmd/prometheus
