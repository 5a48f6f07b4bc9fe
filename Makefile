# nemoclaw — build, test, bench and run.
#
#   make run     run the main job: apply the embedded default blueprint
#   make test    run every test (installs what it needs)
#   make bench   side-by-side benchmarks against the peer tools
#
# System packages are installed with apt-get when running as root; otherwise
# the exact command to run is printed.

SHELL        := /bin/bash
GO           ?= go
BIN          := $(CURDIR)/bin
# go-nvml's cgo bindings use deprecated NVML symbols; keep the build quiet.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# The version lives in runner/version (what `nemoclaw version` prints and
# min_runner_version gates compare against); a build adds the commit as its
# build metadata.
LDFLAGS      := -s -w -X github.com/nemoclaw/nemoclaw/runner/version.Build=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Packages needed to build (libseccomp) and by the tests (the real
# clients and servers the tests drive).
DEPS_PKGS    := libseccomp-dev gcc pkg-config git curl python3 nodejs iproute2 docker-registry apache2-utils
# What e2e/tools/ollama.sh needs to build the real Ollama server the
# inference tests run (cgo, llama.cpp headers its module zip lacks).
OLLAMA_PKGS  := g++ nlohmann-json3-dev libstb-dev
# Peers the benchmarks compare against.
BENCH_PKGS   := bubblewrap firejail tinyproxy squid wrk hyperfine bc

# ./cmd/... is nemoclaw (the command users type) and nemoclaw-dist (the
# registry and signing commands, which nemoclaw hands over to by exec; kept
# out of nemoclaw for its start-up time): both must land side by side in
# $(BIN).
BIN_PKGS     := ./cmd/...
# The inference plugins (plugins/inference-NAME) are built next to them as
# nemoclaw-inference-NAME, where the plugin host looks for bundled plugins.
PLUGIN_PKGS  := $(patsubst %/main.go,%,$(wildcard plugins/inference-*/main.go))

TEST_TIMEOUT ?= 10m
# The packages whose goroutines meet (the launcher, its terminal relays and
# signal forwarding, the proxy) run a second time under the race detector.
RACE_PKGS    := ./runner/sandbox ./runner/cli ./runner/egress ./runner/supervisor ./runner/inference ./plugins/sdk/...
FUZZTIME     ?= 60s
ARGS         ?=

.PHONY: all build test e2e-tools lint bench run deps deps-npm bench-deps fuzz clean help generate proto-tools

all: build

help:
	@sed -n 's/^#\(.*\)/\1/p' Makefile | head -12

define install_pkgs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call install_pkgs,$(DEPS_PKGS))
	@# npm (runner/tools, the OpenClaw e2e): Debian's package, unless a
	@# nodejs that bundles it (NodeSource's) already provides the command.
	@command -v npm >/dev/null || $(MAKE) --no-print-directory deps-npm

deps-npm:
	$(call install_pkgs,npm)

bench-deps: deps
	$(call install_pkgs,$(BENCH_PKGS))

build: deps
	@mkdir -p $(BIN)
	@for p in $(PLUGIN_PKGS); do $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nemoclaw-$$(basename $$p) ./$$p || exit 1; done
	@# the plugins built here are pinned by this build: nemoclaw trusts each
	@# one found next to it when its checksum is the one recorded here
	$(GO) build -trimpath -ldflags "$(LDFLAGS) -X github.com/nemoclaw/nemoclaw/runner/version.BundledPlugins=$$(cd $(BIN) && for p in $(notdir $(PLUGIN_PKGS)); do printf '%s=%s,' $${p#inference-} $$(sha256sum nemoclaw-$$p | cut -d' ' -f1); done)" -o $(BIN)/ $(BIN_PKGS)
	@for b in nemoclaw nemoclaw-dist; do test -x $(BIN)/$$b || { echo "make build: no $(BIN)/$$b"; exit 1; }; done

# The third-party clients the interoperability tests drive (oras, crane,
# cosign) are built from the Go module proxy once per machine and cached;
# a cold build takes minutes, so it runs here, outside the suite's timeout.
# So is Ollama (CPU only) with a tiny model for the inference tests, and
# so is the Kubernetes control plane of the render tests (kube-apiserver,
# kubectl, kube-controller-manager, etcd, the agent-sandbox controller:
# e2e/kube-tools.sh).
e2e-tools: build
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 60m -run '^TestInteropToolsBuilt$$' ./e2e
	$(call install_pkgs,$(OLLAMA_PKGS))
	bash e2e/tools/ollama.sh
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 80m -run '^TestKubeToolsBuilt$$' ./e2e

test: build e2e-tools proto-tools
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: bench-deps build
	NEMOCLAW_BIN_DIR=$(BIN) bash bench/run.sh

run: build
	$(BIN)/nemoclaw blueprint apply $(ARGS)

# The inference plugin protocol (schema/inference.proto) is compiled into
# plugins/sdk/proto/inferencev1 and checked in; `make generate` reproduces it
# and a test (TestGeneratedProtoCurrent) fails when the two disagree. protoc
# is Debian's; the Go generators are pinned and cached once per machine.
PROTO_TOOLS               := $(HOME)/.cache/nemoclaw-protoc-bin
PROTOC_GEN_GO_VERSION     := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

proto-tools:
	$(call install_pkgs,protobuf-compiler)
	@test -x $(PROTO_TOOLS)/protoc-gen-go || GOBIN=$(PROTO_TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(PROTO_TOOLS)/protoc-gen-go-grpc || GOBIN=$(PROTO_TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

generate: proto-tools
	PATH=$(PROTO_TOOLS):$$PATH protoc -I schema \
	  --go_out=. --go_opt=module=github.com/nemoclaw/nemoclaw \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/nemoclaw/nemoclaw \
	  schema/inference.proto

# Run every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
