#!/usr/bin/env bash
# Runs fuzz targets one after another, each for a bounded time, and fails if any of them finds
# a crash, a panic, a timeout or runs out of memory. Used by `make fuzz` and `make fuzz-smoke`.
#
#   fuzz/run.sh SECONDS [TARGET...]      (no target: every target in fuzz/Cargo.toml)
#
# Environment: FUZZ_SANITIZER (default `none`, which builds on stable Rust; `address` needs
# RUSTC_BOOTSTRAP=1, set here), FUZZ_NICE (default 10), FUZZ_CODEGEN_UNITS (default 16: a
# faster build than cargo-fuzz's 1, for slightly slower runs).
#
# Corpora: the committed seeds in fuzz/seeds/<target>/ are read, never written; what the fuzzer
# finds goes to fuzz/corpus/<target>/ (ignored by git, kept between runs so later runs start
# from there). A failing input is written to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
sanitizer="${FUZZ_SANITIZER:-none}"
nice_level="${FUZZ_NICE:-10}"
build=(cargo fuzz build --sanitizer "$sanitizer" --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
if [[ "$sanitizer" != none ]]; then
  # cargo-fuzz passes -Zsanitizer, which stable rustc accepts only with this.
  export RUSTC_BOOTSTRAP=1
fi

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

build_start=$SECONDS
if ((${#targets[@]} == 1)); then
  nice -n "$nice_level" "${build[@]}" "${targets[0]}"
else
  nice -n "$nice_level" "${build[@]}"
fi
echo "fuzz: built in $((SECONDS - build_start)) s"
bin_dir="fuzz/target/x86_64-unknown-linux-gnu/release"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  flags=(
    -max_total_time="$seconds"
    -timeout=10            # one input taking over 10 s is a hang: reported as a failure
    -rss_limit_mb=2048
    -print_final_stats=1
    -artifact_prefix="$artifacts/"
  )
  [[ -f "fuzz/dicts/$target.dict" ]] && flags+=(-dict="fuzz/dicts/$target.dict")
  log="fuzz/artifacts/$target.log"
  echo "fuzz: $target for $seconds s"
  status=0
  nice -n "$nice_level" "$bin_dir/$target" "${flags[@]}" "$corpus" "fuzz/seeds/$target" >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
  if ((status != 0)); then
    failed+=("$target")
    summary+=("$(printf '%-10s FAILED (exit %s): see %s and %s' "$target" "$status" "$log" "$artifacts/")")
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
  else
    summary+=("$(printf '%-10s ok  %8s runs  %6s exec/s  cov %s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
  fi
done

echo "fuzz: summary ($seconds s per target, sanitizer $sanitizer)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  echo "fuzz: reproduce with: $bin_dir/<target> fuzz/artifacts/<target>/<crash file>" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
