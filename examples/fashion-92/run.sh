#!/usr/bin/env bash
# Reproduces examples/fashion-92: the teacher, its cached logits on 4 augmented views of the
# training set, and the student from scratch and distilled for each seed; then prints the table.
#   DISTILL=/path/to/distill OUT=runs/fashion92 SEEDS="0 1 2" examples/fashion-92/run.sh
# Steps whose run folder already holds a summary.json are skipped (rerun to continue).
# Set JOBS=2 to run two student runs side by side (each with DISTILL_THREADS=1); KINDS=kd runs the
# distilled students only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DISTILL="${DISTILL:-distill}"
OUT="${OUT:-runs/fashion-92}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-1}"
KINDS="${KINDS:-kd scratch}"  # with JOBS=1: which students, in this order
VIEWS=4
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
timed() { # timed NAME command...: runs it, records its wall-clock seconds in $OUT/NAME.seconds
    local name="$1"; shift
    local start; start=$(date +%s)
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    echo $(( $(date +%s) - start )) > "$OUT/$name.seconds"
    log "$name done in $(cat "$OUT/$name.seconds") s"
}

# 1. The teacher (12 epochs, shift 2 + flip, cosine).
if [ ! -f "$OUT/teacher/summary.json" ]; then
    log "teacher"
    timed teacher "$DISTILL" run "$here/teacher.yaml" --output "$OUT/teacher"
fi

# 2. Its logits for 4 augmented views of each training image (the last epoch's weights,
#    student.safetensors: best.safetensors is chosen on the test set).
if [ ! -f "$OUT/teacher-views.npy" ]; then
    log "cache-teacher, $VIEWS views"
    timed cache "$DISTILL" cache-teacher --teacher "$OUT/teacher/student.safetensors" \
        --views "$VIEWS" --shift 2 --flip --seed 0 --out "$OUT/teacher-views.npy"
fi
sed "s|^teacher_outputs: .*|teacher_outputs: $OUT/teacher-views.npy|" "$here/kd.yaml" > "$OUT/kd.yaml"

# 3. The student from scratch and distilled, per seed.
student_run() { # student_run scratch|kd SEED
    local kind="$1" seed="$2" config="$here/scratch.yaml"
    [ "$kind" = kd ] && config="$OUT/kd.yaml"
    [ -f "$OUT/$kind-$seed/summary.json" ] && return 0
    log "$kind seed $seed"
    timed "$kind-$seed" "$DISTILL" run "$config" --seed "$seed" --output "$OUT/$kind-$seed"
}
if [ "$JOBS" -ge 2 ]; then
    export DISTILL_THREADS=1
    for seed in $SEEDS; do
        student_run kd "$seed" & a=$!
        student_run scratch "$seed" & b=$!
        wait $a; wait $b
    done
else
    for kind in $KINDS; do for seed in $SEEDS; do student_run "$kind" "$seed"; done; done
fi

# 4. The table: the last epoch's test accuracy of each run (not the best epoch's, which is chosen on the test set).
python3 - "$OUT" $SEEDS <<'PY'
import json, statistics, sys, os
out, seeds = sys.argv[1], sys.argv[2:]
def last(run):
    with open(os.path.join(out, run, "metrics.jsonl")) as f:
        return json.loads(f.read().strip().splitlines()[-1])["test_accuracy"] * 100
def secs(run):
    p = os.path.join(out, run + ".seconds")
    return int(open(p).read()) if os.path.exists(p) else None
print(f"teacher: {last('teacher'):.2f}% ({secs('teacher')} s)")
for kind in ("scratch", "kd"):
    if not all(os.path.exists(os.path.join(out, f"{kind}-{s}", "metrics.jsonl")) for s in seeds):
        continue
    accs = [last(f"{kind}-{s}") for s in seeds]
    times = [secs(f"{kind}-{s}") for s in seeds]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"{kind:8s} " + "  ".join(f"seed {s}: {a:.2f}% ({t} s)" for s, a, t in zip(seeds, accs, times))
          + f"  mean {statistics.mean(accs):.2f} ± {std:.2f}")
PY
