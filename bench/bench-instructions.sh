#!/usr/bin/env bash
# `make bench-instructions`: instructions per request in a real Envoy under valgrind's callgrind
# (bench/instructions.mjs), for comparisons that wall-clock runs on a shared machine are too
# noisy for. Installs valgrind if it is missing and builds the no-op filter.
#
# Needs ENVOY_BIN and MCP_OAUTH_WASM (the Makefile sets both); BENCH_COMPARE_WASM optional.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ENVOY_BIN:?set ENVOY_BIN to the Envoy binary (make bench-instructions does)}"
: "${MCP_OAUTH_WASM:?set MCP_OAUTH_WASM to the filter .wasm (make bench-instructions does)}"

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  echo "[instructions] installing valgrind (Debian package)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q valgrind >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q valgrind >/dev/null; }
fi

NOOP_TARGET_DIR=target/bench-noop-filter
cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path bench/noop-filter/Cargo.toml --target-dir "$NOOP_TARGET_DIR"
export NOOP_WASM="$PWD/$NOOP_TARGET_DIR/wasm32-wasip1/release/bench_noop_filter.wasm"

exec node bench/instructions.mjs
