#!/usr/bin/env bash
# Builds the fuzz targets, runs each for a bounded time (one after another, or FUZZ_JOBS at a
# time), and fails if any of them finds a crash, a panic, a timeout or runs out of memory.
# Used by `make fuzz` and `make fuzz-smoke`.
#
#   fuzz/run.sh SECONDS [TARGET...]      (no target: every target in fuzz/Cargo.toml)
#
# Environment: FUZZ_JOBS (targets at a time, default 1), FUZZ_SANITIZER (default `none`, which
# builds on stable Rust; `address` needs RUSTC_BOOTSTRAP=1, set here), FUZZ_NICE (default 10),
# FUZZ_CODEGEN_UNITS (default 16: a faster build than cargo-fuzz's 1, for slightly slower runs).
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

# One target: libFuzzer for $seconds, its log in fuzz/artifacts/<target>.log, its exit status
# in fuzz/artifacts/<target>.status.
run_one() {
  local target="$1" status=0
  local corpus="fuzz/corpus/$target" artifacts="fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  local flags=(
    -max_total_time="$seconds"
    -timeout=10            # one input taking over 10 s is a hang: reported as a failure
    -rss_limit_mb=2048
    -print_final_stats=1
    -artifact_prefix="$artifacts/"
  )
  [[ -f "fuzz/dicts/$target.dict" ]] && flags+=(-dict="fuzz/dicts/$target.dict")
  echo "fuzz: $target for $seconds s"
  nice -n "$nice_level" "$bin_dir/$target" "${flags[@]}" "$corpus" "fuzz/seeds/$target" \
    >"fuzz/artifacts/$target.log" 2>&1 || status=$?
  echo "$status" >"fuzz/artifacts/$target.status"
}

# FUZZ_JOBS targets at a time (default 1; each fuzzer uses one core).
jobs_max="${FUZZ_JOBS:-1}"
run_start=$SECONDS
for target in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs_max)); do
    wait -n || true
  done
  run_one "$target" &
done
wait
echo "fuzz: ran in $((SECONDS - run_start)) s"

failed=()
summary=()
for target in "${targets[@]}"; do
  log="fuzz/artifacts/$target.log"
  status="$(cat "fuzz/artifacts/$target.status" 2>/dev/null || echo missing)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
  if [[ "$status" != 0 ]]; then
    failed+=("$target")
    summary+=("$(printf '%-10s FAILED (exit %s): see %s and fuzz/artifacts/%s/' "$target" "$status" "$log" "$target")")
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
    # The failing input itself, so a CI log is enough to reproduce it.
    for input in $(ls -t "fuzz/artifacts/$target"/{crash,timeout,oom,leak}-* 2>/dev/null | head -1); do
      echo "fuzz: $input as base64 (decode with: base64 -d > input):"
      head -c 65536 "$input" | base64 -w0
      echo
    done
  else
    summary+=("$(printf '%-10s ok  %8s runs  %6s exec/s  cov %s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
  fi
done

echo "fuzz: summary ($seconds s per target, $jobs_max at a time, sanitizer $sanitizer)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  echo "fuzz: reproduce with: $bin_dir/<target> fuzz/artifacts/<target>/<crash file>" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
