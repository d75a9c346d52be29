#!/usr/bin/env bash
# The "Open MPI" figures of BENCHMARKS.md: `mpirun -np 2` against one process, same seed and
# global batch, one thread per rank (DISTILL_THREADS=1):
#   (a) one epoch of `kd`: max abs difference of the students' weights (MLP on all 60,000
#       Fashion-MNIST rows; cnn-small on the first 8,192);
#   (b) 10 epochs of `kd` (mlp:784-64-10, all rows) × 3 seeds: final test accuracy, mean ± std;
#   (c) training samples/s, 1 rank × 1 thread, 2 ranks × 1 thread, 1 rank × 2 threads (best of
#       3 runs), with the allreduce's share of the step time and bytes per step;
#   (d) allreduce bucket sizes (DISTILL_BUCKET_BYTES) on cnn-small, 2 ranks;
#   (e) whether overlapping the allreduce with the backward pass could pay (scripts/mpi_overlap.c);
#   (f) `distill sweep`: one process against 2 ranks (wall time), and the makespan a static
#       round-robin would have had with the same measured (student, seed) times.
# Every section prints `cat /proc/loadavg` first: the machine may be shared.
#
#   DISTILL_BINARY=.build-mpi/release/distill scripts/mpi_bench.sh [sections, e.g. "a b c"] | tee bench.txt
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${DISTILL_BINARY:-.build/release/distill}
python=${PYTHON:-python3}
sections=${1:-"a b c d e f"}
seeds=${SEEDS:-"1 2 3"}
command -v mpirun >/dev/null || { echo "mpi_bench: needs mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
[ -x "$distill" ] || { echo "mpi_bench: $distill not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DISTILL_THREADS=1
export DISTILL_BUCKET_BYTES=${DISTILL_BUCKET_BYTES:-4194304}  # the default: one bucket for these students
two=(mpirun -np 2 -x DISTILL_THREADS -x DISTILL_BUCKET_BYTES)
work=${MPI_BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
echo "mpi_bench: work folder $work; $(nproc) cores; $(mpirun --version | head -1)"
load() { echo "load ($1): $(cat /proc/loadavg)"; }
wants() { [[ " $sections " == *" $1 "* ]]; }

# max_difference A.safetensors B.safetensors: the largest |a − b| over every weight.
max_difference() {
  "$python" - "$1" "$2" <<'EOF'
import json, struct, sys
def load(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__": continue
        lo, hi = info["data_offsets"]
        raw = data[8 + n + lo: 8 + n + hi]
        out[name] = struct.unpack(f"<{len(raw) // 4}f", raw)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
print(f"{max(abs(x - y) for k in a for x, y in zip(a[k], b[k])):.3g}")
EOF
}
# metric FOLDER KEY: the last epoch's value of KEY in FOLDER/metrics.jsonl.
metric() { "$python" -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1]).get(sys.argv[2], ''))" "$1/metrics.jsonl" "$2"; }

teacher="$work/teacher"
if [ ! -f "$teacher/best.safetensors" ]; then
  "$distill" train --model mlp:784-256-10 --data fashion-mnist --epochs 3 --seed 0 --quiet --output "$teacher" >/dev/null
fi

if wants a; then
  load "a: one epoch, weights"
  for setting in "mlp:784-64-10|" "cnn-small|--train-limit 8192"; do
    student=${setting%%|*}; extra=${setting#*|}
    kd=(kd --teacher "$teacher" --student "$student" --epochs 1 --batch-size 128 --seed 1 --quiet $extra)
    rm -rf "$work/a-one" "$work/a-two"
    "$distill" "${kd[@]}" --output "$work/a-one" >/dev/null
    "${two[@]}" "$distill" "${kd[@]}" --output "$work/a-two" >/dev/null
    echo "a: kd $student ${extra:-(all 60000 rows)}, 1 epoch, batch 128: max abs weight difference 1 process vs 2 ranks $(max_difference "$work/a-one/student.safetensors" "$work/a-two/student.safetensors"); test accuracy $(metric "$work/a-one" test_accuracy) vs $(metric "$work/a-two" test_accuracy)"
  done
fi

if wants b; then
  load "b: 10 epochs x 3 seeds"
  for ranks in 1 2; do
    accuracies=()
    for seed in $seeds; do
      out="$work/b-$ranks-$seed"
      rm -rf "$out"
      kd=(kd --teacher "$teacher" --student mlp:784-64-10 --epochs 10 --batch-size 128 --seed "$seed" --quiet --output "$out")
      if [ "$ranks" = 1 ]; then "$distill" "${kd[@]}" >/dev/null; else "${two[@]}" "$distill" "${kd[@]}" >/dev/null; fi
      accuracies+=("$(metric "$out" test_accuracy)")
    done
    "$python" - "$ranks" "${accuracies[@]}" <<'EOF'
import statistics, sys
ranks, values = sys.argv[1], [float(v) for v in sys.argv[2:]]
print(f"b: kd mlp:784-64-10, 10 epochs, all rows, {'1 process' if ranks == '1' else ranks + ' ranks'}: test accuracy {100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}% (seeds: {', '.join(f'{100 * v:.2f}' for v in values)})")
EOF
  done
  load "b: done"
fi

# best_of LABEL COMMAND...: runs the command 3 times into fresh folders, prints the best epoch's figures.
best_of() {
  local label=$1; shift
  local best=0 line=""
  for k in 1 2 3; do
    rm -rf "$work/c-run"
    "$@" --output "$work/c-run" >/dev/null
    local rate
    rate=$(metric "$work/c-run" samples_per_second)
    if "$python" -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$rate" "$best"; then
      best=$rate
      line=$("$python" - "$work/c-run/metrics.jsonl" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).read().splitlines()[-1])
text = f"{m['samples_per_second']:,.0f} samples/s"
if "ranks" in m:
    text += f", allreduce {m['allreduce_bytes_per_step'] / 1024:,.0f} KB per step, {100 * m['allreduce_seconds'] / m['step_seconds']:.1f}% of step time on rank 0"
print(text)
EOF
)
    fi
  done
  echo "c: $label: $line (best of 3)"
}

if wants c; then
  load "c: scaling"
  for setting in "cnn-small|train --model cnn-small --train-limit 8192" "mlp:784-64-10 kd|kd --teacher $teacher --student mlp:784-64-10"; do
    name=${setting%%|*}; read -r -a args <<<"${setting#*|}"
    run=("${args[@]}" --epochs 1 --batch-size 128 --seed 1 --quiet)
    best_of "$name, 1 rank x 1 thread" "$distill" "${run[@]}"
    best_of "$name, 2 ranks x 1 thread" "${two[@]}" "$distill" "${run[@]}"
    DISTILL_THREADS=2 best_of "$name, 1 rank x 2 threads" "$distill" "${run[@]}"
  done
  load "c: done"
fi

if wants d; then
  load "d: buckets"
  for bytes in 65536 262144 1048576 4194304; do
    DISTILL_BUCKET_BYTES=$bytes best_of "cnn-small, 2 ranks, buckets of $bytes bytes" "${two[@]}" "$distill" train --model cnn-small --train-limit 8192 --epochs 1 --batch-size 128 --seed 1 --quiet
  done
fi

if wants e; then
  load "e: overlap"
  mpicc -O2 -o "$work/mpi_overlap" scripts/mpi_overlap.c
  # cnn-small's gradient and about a backward pass of 64 rows on one core; the MLP's and its.
  "${two[@]}" "$work/mpi_overlap" 421642 16 16 20 | sed 's/^/e: /'
  "${two[@]}" "$work/mpi_overlap" 50890 0.3 8 50 | sed 's/^/e: /'
fi

if wants f; then
  load "f: sweep"
  sweep=(sweep --teacher "$teacher" --students "mlp:784-{16,64,256}-10,cnn-small" --seeds 2 --epochs 2 --train-limit 4000
         --batch-size 128 --speed-seconds 0.2 --quiet)
  rm -rf "$work/f-one" "$work/f-two"
  start=$(date +%s.%N); "$distill" "${sweep[@]}" --output "$work/f-one" >/dev/null; middle=$(date +%s.%N)
  "${two[@]}" "$distill" "${sweep[@]}" --output "$work/f-two" >/dev/null; end=$(date +%s.%N)
  "$python" - "$work/f-one/sweep.jsonl" "$work/f-two/sweep.jsonl" "$(echo "$middle - $start" | bc)" "$(echo "$end - $middle" | bc)" <<'EOF'
import json, sys
one, two = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
t1, t2 = float(sys.argv[3]), float(sys.argv[4])
same = [(r["name"], r["seed"], r["accuracy"], r["accuracy_scratch"]) for r in one] == [(r["name"], r["seed"], r["accuracy"], r["accuracy_scratch"]) for r in two]
print(f"f: sweep of {len(one)} (student, seed) pairs: 1 process {t1:.1f} s, 2 ranks {t2:.1f} s ({t1 / t2:.2f}x); same rows and accuracies: {same}")
# The two schedules on the one-process run's measured times (minutes per pair), costliest first
# as the queue orders them (the estimated cost: parameters stand in for FLOPs here).
minutes = [60 * r["minutes"] for r in one]
order = sorted(range(len(one)), key=lambda i: (-(one[i].get("flops") or 2 * one[i]["params"]), i))
free = [0.0, 0.0]
for i in order:
    k = free.index(min(free)); free[k] += minutes[i]
rr = [0.0, 0.0]
for n, i in enumerate(order): rr[n % 2] += minutes[i]
print(f"f: with the measured pair times ({sum(minutes):.1f} s in all): dynamic queue makespan {max(free):.1f} s, static round-robin {max(rr):.1f} s, perfect split {sum(minutes) / 2:.1f} s")
EOF
  load "f: done"
fi
