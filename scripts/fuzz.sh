#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ (with coverage and AddressSanitizer, flags as in
# PLATFORM.md) and runs each for a bounded time:
#
#   scripts/fuzz.sh SECONDS [TARGET...]     # TARGET: IDX NPY NPZ Safetensors CSV Experiment SavedModel ONNX
#
# Seeds come from fuzz/corpus/<target>/ (committed); inputs the fuzzer finds interesting go to
# fuzz/.build/corpus/<target>/ and crashing ones to fuzz/.build/crashes/. FUZZ_JOBS targets run at
# once (default 2). Prints executions per target; exits 1 when any target crashed, hung or ran out
# of memory, naming the input to add to the regression tests and printing it in base64 (so a crash
# found on a CI machine can be rebuilt from its log). FUZZ_SEED seeds libFuzzer (default 1, so two
# runs of equal length explore alike; 0 picks a random seed).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(IDX NPY NPZ Safetensors CSV Experiment SavedModel ONNX)
jobs=${FUZZ_JOBS:-2}

swift build --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -E "error|warning: .*fuzz|Compiling Fuzz|Build complete" || true
bin=$(swift build --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address --show-bin-path)
mkdir -p .build/crashes .build/logs

run_one() {
    local t=$1
    mkdir -p ".build/corpus/$t"
    # -rss_limit_mb and -malloc_limit_mb: an allocation the input's size does not justify is a bug.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "$bin/Fuzz$t" \
        -max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix=".build/crashes/$t-" ".build/corpus/$t" "corpus/$t" >".build/logs/$t.log" 2>&1
}

status=0
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

printf '%-12s %12s %8s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    log=".build/logs/$t.log"
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
    speed=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
    if grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|SUMMARY: (libFuzzer|AddressSanitizer)|Fatal error|deadly signal' "$log"; then
        unit=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
        result="FAILED: ${unit:-no input saved} (log: fuzz/$log)"
        status=1
        grep -E 'ERROR: |SUMMARY: |Fatal error' "$log" | head -5 >&2 || true
        if [ -n "$unit" ] && [ -f "$unit" ]; then
            echo "$t crashing input, base64 (rebuild with: base64 -d > input):" >&2
            base64 -w 76 "$unit" | head -200 >&2
        fi
    else
        result=ok
    fi
    printf '%-12s %12s %8s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "$result"
done
exit $status
