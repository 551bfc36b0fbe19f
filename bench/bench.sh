#!/usr/bin/env bash
# `make bench`: the side-by-side benchmark (bench/run.mjs does the measuring and writes
# BENCHMARKS.md). This wrapper installs wrk if it is missing, builds the no-op Wasm filter
# (bench/noop-filter/), and makes sure every process the benchmark started is gone on exit.
#
# Needs ENVOY_BIN (the real Envoy binary) and MCP_OAUTH_WASM (our filter); the Makefile sets
# both. Knobs (see bench/run.mjs): BENCH_ROUNDS, BENCH_DURATION, BENCH_WARMUP,
# BENCH_CONNECTIONS, BENCH_STARTS, BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ENVOY_BIN:?set ENVOY_BIN to the Envoy binary (make bench does)}"
: "${MCP_OAUTH_WASM:?set MCP_OAUTH_WASM to the filter .wasm (make bench does)}"

if ! command -v wrk >/dev/null; then
  echo "[bench] installing wrk (Debian package)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q wrk >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q wrk >/dev/null; }
fi
command -v wrk >/dev/null || { echo "[bench] wrk is not available" >&2; exit 1; }

NOOP_TARGET_DIR=target/bench-noop-filter
cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path bench/noop-filter/Cargo.toml --target-dir "$NOOP_TARGET_DIR"
export NOOP_WASM="$PWD/$NOOP_TARGET_DIR/wasm32-wasip1/release/bench_noop_filter.wasm"

export BENCH_TMP
BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/mcp-oauth-bench.XXXXXX")"
node_pid=""
cleanup() {
  # run.mjs stops what it started and keeps $BENCH_TMP/pids listing its children still
  # running (Envoys, wrk); this is for when it could not. Only those pids, and only if they
  # are still an envoy or wrk.
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  if [ -f "$BENCH_TMP/pids" ]; then
    while read -r pid; do
      case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        envoy|wrk|taskset) kill -9 "$pid" 2>/dev/null || true ;;
      esac
    done < "$BENCH_TMP/pids"
  fi
  rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

node bench/run.mjs &
node_pid=$!
wait "$node_pid"
