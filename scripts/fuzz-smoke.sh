#!/usr/bin/env bash
# Bounded fuzzing of every fuzz target on the stable toolchain (cargo-fuzz with
# `--sanitizer none`: libFuzzer's coverage-guided search, no ASan; the code is safe Rust, so
# what we hunt is panics, aborts, timeouts and runaway memory).
#
#   scripts/fuzz-smoke.sh                 # every target, FUZZ_RUNS inputs each (CI smoke)
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh logql   # one target for five minutes
#
# Deterministic by default (fixed seed and run count), so a smoke run that passes here passes
# in CI. New inputs go to a temp dir; pass FUZZ_KEEP_CORPUS=1 to add them to the repo corpus.
# A crash leaves its input under <fuzz dir>/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${FUZZ_RUNS:-20000}"
seconds="${FUZZ_SECONDS:-}"
only=("$@")

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# One target dir for both fuzz workspaces, so shared dependencies build once.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"

failed=0
for dir in fuzz alloy-syntax/fuzz; do
    for target in $(cargo fuzz list --fuzz-dir "$dir"); do
        if ((${#only[@]})) && [[ ! " ${only[*]} " == *" $target "* ]]; then
            continue
        fi
        corpus="$dir/corpus/$target"
        mkdir -p "$corpus"
        work="$(mktemp -d)"
        if [[ -n "${FUZZ_KEEP_CORPUS:-}" ]]; then
            first="$corpus"
        else
            first="$work"
        fi
        if [[ -n "$seconds" ]]; then
            budget=(-max_total_time="$seconds")
        else
            budget=(-runs="$runs" -seed=1)
        fi
        echo "== $dir $target (${budget[*]})"
        if ! cargo fuzz run --fuzz-dir "$dir" --sanitizer none "$target" "$first" "$corpus" -- \
            "${budget[@]}" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
            2>"$work/log"; then
            tail -40 "$work/log"
            echo "FAILED: $dir $target"
            failed=1
        else
            grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)" "$work/log" || true
        fi
        rm -rf "$work"
    done
done
exit "$failed"
