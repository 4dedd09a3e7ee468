# Benchmarks, included by the Makefile. `make bench` prints:
#  1. the engine's benchmarks (-benchmem): the four benchmarked decisions
#     at 1k, 10k and 100k pods on the index and on a Snapshot, a
#     namespace-wide decision in a namespace of 1k to 100k pods, and the
#     pod informer store's heap per pod (B/pod, index-B/pod); then the
#     webhook's HTTP handler serving one request (BenchmarkServeHTTP);
#  2. internal/bench, a separate Go module (OPA stays out of the guard's):
#     the guard next to the equivalent Rego policy in OPA and next to a
#     LIST of the pods from a real kube-apiserver per request, with ratios,
#     then the end-to-end load through the API server, alternating without
#     and with bin/mtls-guard registered. Its test first checks that the
#     Rego peer decides as the guard does.
# About 5 minutes on 2 cores once bin/ is built; loopback only.

BENCHTIME   ?= 1s
# BENCH_FLAGS are passed to internal/bench, e.g. BENCH_FLAGS='-apiserver-pods 100000'.
BENCH_FLAGS ?=

.PHONY: bench bench-engine bench-webhook bench-peers

## bench: engine benchmarks, then the guard next to OPA/Rego, a LIST per request and end to end (about 5 minutes).
bench: bench-engine bench-webhook bench-peers

## bench-engine: go test -bench on internal/engine (decisions at every size, memory per cached pod).
bench-engine:
	go test ./internal/engine -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 30m

## bench-webhook: go test -bench on webhook (one admission request through the handler, decided on an index of 10k pods).
bench-webhook:
	go test ./webhook -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME)

## bench-peers: internal/bench, the peers side by side with the guard, then the end-to-end load against bin/mtls-guard in its own process.
bench-peers: testbin build
	cd internal/bench && go test -count=1 ./... && go run . $(BENCH_FLAGS)
