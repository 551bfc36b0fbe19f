#!/usr/bin/env bash
# `make wasm`'s last step: Binaryen's wasm-opt -O3 on the module cargo built. It removes about
# a sixth of the size (duplicate functions, dead code, smaller encodings) that LLVM leaves.
# -Oz saves 23 KB more but measured about 25% slower signature checks inside Envoy (bench
# compare runs, side by side); -O3 measured no slower than cargo's own output.
# -ocimfs 200: by default wasm-opt inlines every function that has one caller, whatever its
# size, and V8 then needed about 20 MiB more memory per Envoy (VmRSS 140 vs 120 MiB with one
# worker) for the few huge functions that made; capped, the module is 1 KB larger.
# Cargo links its output (target/<target>/release/mcp_oauth_wasm.wasm) afresh on every build,
# so the optimised module is kept beside it, named by the SHA-256 of the module it came from
# and of this script (its settings), and copied over cargo's output: wasm-opt runs only when
# cargo produced a new module or the settings changed.
set -euo pipefail
out="$1"
sum="$(cat "$out" "$0" | sha256sum | cut -d' ' -f1)"
cache="$(dirname "$out")/optimized"
optimized="$cache/$sum.wasm"
if [[ ! -f "$optimized" ]]; then
  if [[ -f "$cache/index" ]] && grep -qx "$(sha256sum "$out" | cut -d' ' -f1)" "$cache/index"; then
    exit 0 # $out is already an optimised module
  fi
  command -v wasm-opt >/dev/null || { echo "optimize-wasm: wasm-opt (Debian package binaryen) is not installed" >&2; exit 1; }
  rm -rf "$cache"
  mkdir -p "$cache"
  # The features rustc enables for wasm32-wasip1 (the release profile strips the section that
  # would say so); V8 in Envoy has them all.
  features=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue)
  wasm-opt -O3 --one-caller-inline-max-function-size 200 "${features[@]}" --strip-debug --strip-producers "$out" -o "$optimized.tmp"
  mv -f "$optimized.tmp" "$optimized"
  sha256sum "$optimized" | cut -d' ' -f1 > "$cache/index"
fi
# Replace cargo's hard link (to target/.../deps) with a copy: the copy in deps stays as built.
rm -f "$out"
cp "$optimized" "$out"
