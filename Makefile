# mtls-guard. `make test` is what CI runs; `make demo` replays the seed story.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

BIN        := $(CURDIR)/bin
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/mtls-guard/mtls-guard/internal/version.Version=$(VERSION)
IMAGE      ?= ghcr.io/mtls-guard/mtls-guard:$(VERSION)
CONTROLPLANE := internal/testenv/controlplane
TESTBIN    := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kubectl

.PHONY: all build build-static test lint manifests testbin demo run image clean

all: build

## build: the mtls-guard binary for this machine, in bin/.
build:
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/mtls-guard .

## build-static: the same static binary the Dockerfile builds.
build-static:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/mtls-guard-static .

## testbin: etcd, kube-apiserver and kubectl from the Go module proxy (built once, reused).
testbin: $(TESTBIN)

$(BIN)/kube-apiserver:
	cd $(CONTROLPLANE) && go build -o $@ k8s.io/kubernetes/cmd/kube-apiserver
$(BIN)/kubectl:
	cd $(CONTROLPLANE) && go build -o $@ k8s.io/kubernetes/cmd/kubectl
$(BIN)/etcd:
	cd $(CONTROLPLANE) && go build -o $@ go.etcd.io/etcd/server/v3

## lint: gofmt and go vet.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...

## manifests: kubectl kustomize deploy/ and every overlay.
manifests: $(BIN)/kubectl
	for d in deploy deploy/overlays/*/; do echo "kustomize $$d"; $(BIN)/kubectl kustomize $$d > /dev/null; done

# TEST_MODULES are the separate Go modules (heavy tools kept out of the
# guard's go.mod) whose tests `make test` runs too; each *.mk file below
# adds its own.
TEST_MODULES := internal/bench
# GOTEST_TIMEOUT bounds every go test run, so a hung test fails with its
# goroutines dumped instead of eating CI's time.
GOTEST_TIMEOUT ?= 20m

## test: lint, manifests, and every test (unit and end to end) with -race, in every module.
test: testbin lint manifests build-static
	go test -race -count=1 -timeout $(GOTEST_TIMEOUT) ./...
	for m in $(TEST_MODULES); do echo "== module $$m"; (cd $$m && go vet ./... && go test -count=1 -timeout $(GOTEST_TIMEOUT) ./...); done

## run: serve against the current kubeconfig (certificates in ./bin/certs).
run: build
	$(BIN)/mtls-guard certs --service mtls-guard --namespace mtls-guard --ip 127.0.0.1 --out $(BIN)/certs > /dev/null
	$(BIN)/mtls-guard serve --cert-dir $(BIN)/certs --host 127.0.0.1

## image: the container image (needs a Docker engine).
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf $(BIN)

## demo: the seed story on a local control plane, end to end.
demo: testbin build
	go run ./internal/demo

include fuzz.mk bench.mk
# Each test module under internal/testenv may add its binaries and itself.
include $(wildcard internal/testenv/*/module.mk)
