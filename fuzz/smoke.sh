#!/usr/bin/env bash
# A bounded run of every fuzz target, for CI: builds them (stable toolchain,
# no sanitizer; see fuzz/README.md) and runs each for SECONDS (default 10)
# from its committed seed corpus. New inputs go to a temp dir, so the
# committed corpus stays as it is; a crash fails the run and leaves its
# input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${1:-10}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logagg-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo fuzz build --sanitizer none
for target in $(cargo fuzz list); do
    mkdir -p "$WORK/$target"
    echo "== fuzz $target for ${SECONDS_EACH}s" >&2
    log="$WORK/$target.log"
    if ! cargo fuzz run --sanitizer none "$target" "$WORK/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed; its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$log" >&2
done
