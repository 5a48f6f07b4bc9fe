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
# Peers the benchmarks compare against.
BENCH_PKGS   := bubblewrap firejail tinyproxy squid wrk hyperfine bc

# ./cmd/... is nemoclaw (the command users type) and nemoclaw-dist (the
# registry and signing commands, which nemoclaw hands over to by exec; kept
# out of nemoclaw for its start-up time): both must land side by side in
# $(BIN). The inference plugins join the build once plugins/ holds them.
BIN_PKGS     := ./cmd/... $(if $(wildcard plugins/*/*.go),./plugins/...)

TEST_TIMEOUT ?= 10m
# The packages whose goroutines meet (the launcher, its terminal relays and
# signal forwarding, the proxy) run a second time under the race detector.
RACE_PKGS    := ./runner/sandbox ./runner/cli ./runner/egress ./runner/supervisor
FUZZTIME     ?= 60s
ARGS         ?=

.PHONY: all build test e2e-tools lint bench run deps deps-npm bench-deps fuzz clean help

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
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(BIN_PKGS)
	@for b in nemoclaw nemoclaw-dist; do test -x $(BIN)/$$b || { echo "make build: no $(BIN)/$$b"; exit 1; }; done

# The third-party clients the interoperability tests drive (oras, crane,
# cosign) are built from the Go module proxy once per machine and cached;
# a cold build takes minutes, so it runs here, outside the suite's timeout.
e2e-tools: build
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 60m -run '^TestInteropToolsBuilt$$' ./e2e

test: build e2e-tools
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	NEMOCLAW_BIN_DIR=$(BIN) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: bench-deps build
	NEMOCLAW_BIN_DIR=$(BIN) bash bench/run.sh

run: build
	$(BIN)/nemoclaw blueprint apply $(ARGS)

# Run every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
