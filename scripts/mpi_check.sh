#!/usr/bin/env bash
# Data parallelism and sweeps under Open MPI against one process, on 2,000 Fashion-MNIST
# rows, each check as one process and as `mpirun -np 2` with the same seed and global batch:
#   1. `distill kd` for one epoch: max abs difference of the two students' weights (float
#      summation order is the only difference, so it must stay tiny);
#   2. sharded evaluation: both resume the finished run (no epoch left, the saved weights are
#      scored) and must print the same test report bit for bit (a classifier, and a regression
#      model on a generated .csv);
#   3. `--resume` with a different number of ranks: epoch 1 under -np 2 then epoch 2 in one
#      process, and the reverse, against 2 epochs straight in one process;
#   4. `cache-teacher`: rank 0's file is byte for byte one process's;
#   5. `distill sweep` across the ranks: the same rows (accuracies bit for bit) as one process;
#   6. ranks started with different settings stop with an error naming the rank, without hanging,
#      and `distill fit` (whose search follows each process's clock) refuses to run under mpirun;
#   7. one rank killed (SIGKILL) in the middle of an epoch: the job stops within seconds with
#      Open MPI naming the rank, and the last checkpoint resumes to the uninterrupted run's
#      weights bit for bit; SIGTERM to one rank: every rank stops after the same step with a
#      mid-epoch checkpoint, which resumes bit for bit too;
#   8. bad input: a rank that cannot read the data, a rank whose copy of the data differs (same
#      path and settings), and hostfile typos (a misspelled host, a bad slots value, a missing
#      hostfile): each a clear error, within seconds.
#
#   scripts/mpi_check.sh                 # uses $DISTILL_BINARY or .build/release/distill
#   DISTILL_BINARY=.build-mpi/release/distill scripts/mpi_check.sh
#
# Skips (exit 0) where mpirun is missing: `apt-get install openmpi-bin libopenmpi-dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${DISTILL_BINARY:-.build/release/distill}
python=${PYTHON:-.venv/bin/python}
tolerance=${MPI_CHECK_TOLERANCE:-1e-4}

if ! command -v mpirun >/dev/null; then
  echo "mpi_check: skipped, no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
  exit 0
fi
[ -x "$distill" ] || { echo "mpi_check: $distill not built (swift build -c release --product distill)" >&2; exit 1; }
# Absolute: some checks start ranks in folders of their own ("hosts" with their own data).
distill=$(realpath "$distill")
# Root (CI) needs Open MPI's explicit consent; one thread per rank so 2 ranks fit 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DISTILL_THREADS=1
mpirun=(timeout 120 mpirun -np 2 -x DISTILL_THREADS)
fail() { echo "mpi_check: $*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--data fashion-mnist --train-limit 2000 --batch-size 128 --seed 1 --quiet)

"$distill" train --model mlp:784-128-10 "${common[@]}" --epochs 1 --output "$work/teacher" >/dev/null
kd=(kd --teacher "$work/teacher" --student mlp:784-64-10 "${common[@]}")

# 1. One epoch, one process against two ranks.
start=$(date +%s.%N)
"$distill" "${kd[@]}" --epochs 1 --output "$work/one" >/dev/null
middle=$(date +%s.%N)
"${mpirun[@]}" "$distill" "${kd[@]}" --epochs 1 --output "$work/two" >/dev/null
end=$(date +%s.%N)
echo "mpi_check: 1 process $(echo "$middle - $start" | bc) s, mpirun -np 2 $(echo "$end - $middle" | bc) s (whole commands: data loading, teacher logits and the test set included)"
# Rank 0 alone writes the run folder: one metrics line with the communication figures.
grep -q '"ranks":2' "$work/two/metrics.jsonl" || fail "metrics.jsonl lacks the 2-rank line"

have_numpy=false
if [ -x "$python" ] && "$python" -c "import numpy, safetensors" 2>/dev/null; then have_numpy=true; fi
# max_difference LABEL A.safetensors B.safetensors: prints the max abs weight difference, fails above the tolerance.
max_difference() {
  if $have_numpy; then
    "$python" - "$@" "$tolerance" <<'EOF'
import sys
from safetensors.numpy import load_file
label, one, two, tolerance = sys.argv[1], load_file(sys.argv[2]), load_file(sys.argv[3]), float(sys.argv[4])
assert one.keys() == two.keys(), (sorted(one), sorted(two))
worst = max(float(abs(one[k].astype("float64") - two[k]).max()) for k in one)
largest = max(float(abs(one[k]).max()) for k in one)
print(f"mpi_check: max abs weight difference, {label}: {worst:.3g} (largest weight {largest:.3g}, tolerance {tolerance:g})")
sys.exit(0 if worst <= tolerance else 1)
EOF
  elif cmp -s "$2" "$3"; then
    echo "mpi_check: $1: weights identical"
  else
    echo "mpi_check: $1: no .venv with numpy+safetensors (scripts/setup-tests.sh) to measure the weight difference"
  fi
}
max_difference "1 process vs 2 ranks, 1 epoch" "$work/one/student.safetensors" "$work/two/student.safetensors"

# 2. Sharded evaluation: the same finished weights scored by one process and by two ranks.
cp -r "$work/two" "$work/score-one" && cp -r "$work/two" "$work/score-two"
"$distill" train --resume "$work/score-one" --json --quiet >"$work/score-one.json"
"${mpirun[@]}" "$distill" train --resume "$work/score-two" --json --quiet >"$work/score-two.json"
python3 - "$work/score-one.json" "$work/score-two.json" <<'EOF' || fail "2 ranks' test report differs from one process's"
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["accuracy", "top5_accuracy", "loss", "expected_calibration_error", "confusion_matrix", "per_class_accuracy", "count"]
differ = [k for k in keys if one[k] != two[k]]
print(f"mpi_check: test report of the same weights, 1 process vs 2 ranks (each scoring half the batches): {'identical' if not differ else 'differs in ' + ', '.join(differ)} (accuracy {one['accuracy']}, loss {one['loss']!r}, {one['count']} rows)")
sys.exit(1 if differ else 0)
EOF

# A regression run (a .csv with a numeric target): the same comparison of its test errors.
python3 - "$work/table.csv" <<'EOF'
import random, sys
random.seed(5)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,y\n")
    for _ in range(6000):  # a test split of 1,200 rows: two blocks of predictions, one per rank
        a, b, c = (random.uniform(-2, 2) for _ in range(3))
        f.write(f"{a:.5f},{b:.5f},{c:.5f},{3 * a - b * c + random.gauss(0, 0.1):.5f}\n")
EOF
"$distill" train --data "$work/table.csv" --target y --model mlp:3-32-1 --epochs 1 --seed 1 --quiet --output "$work/regression" >/dev/null
cp -r "$work/regression" "$work/regression-two"
"$distill" train --resume "$work/regression" --json --quiet >"$work/regression-one.json"
"${mpirun[@]}" "$distill" train --resume "$work/regression-two" --json --quiet >"$work/regression-two.json"
python3 - "$work/regression-one.json" "$work/regression-two.json" <<'EOF' || fail "2 ranks' regression test errors differ from one process's"
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
same = all(one[k] == two[k] for k in ("rmse", "mae", "r2", "count"))
print(f"mpi_check: regression test errors of the same weights, 1 process vs 2 ranks: {'identical' if same else 'different'} (RMSE {one['rmse']!r}, R² {one['r2']!r}, {one['count']} rows)")
sys.exit(0 if same else 1)
EOF

# 3. --resume with a different number of ranks: epoch 2 of a 2-epoch run continues the 1-epoch
# checkpoints (config.json asks for 2 epochs), across 1 -> 2 and 2 -> 1 ranks.
"$distill" "${kd[@]}" --epochs 2 --output "$work/straight" >/dev/null
for folder in one two; do
  cp -r "$work/$folder" "$work/resume-$folder"
  python3 - "$work/resume-$folder/config.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
config["epochs"] = 2
json.dump(config, open(sys.argv[1], "w"))
EOF
done
"${mpirun[@]}" "$distill" train --resume "$work/resume-one" --quiet >/dev/null
"$distill" train --resume "$work/resume-two" --quiet >/dev/null
for folder in resume-one resume-two; do
  [ "$(wc -l <"$work/$folder/metrics.jsonl")" -eq 2 ] || fail "$folder: expected 2 metrics lines after the resume"
done
max_difference "2 epochs straight (1 process) vs epoch 1 in 1 process + epoch 2 on 2 ranks" "$work/straight/student.safetensors" "$work/resume-one/student.safetensors"
max_difference "2 epochs straight (1 process) vs epoch 1 on 2 ranks + epoch 2 in 1 process" "$work/straight/student.safetensors" "$work/resume-two/student.safetensors"

# 4. cache-teacher: the ranks share the rows out, rank 0 writes the file.
"$distill" cache-teacher --teacher "$work/teacher" --out "$work/logits-one.npy" >/dev/null
"${mpirun[@]}" "$distill" cache-teacher --teacher "$work/teacher" --out "$work/logits-two.npy" >/dev/null
cmp -s "$work/logits-one.npy" "$work/logits-two.npy" || fail "cache-teacher under 2 ranks wrote a different file from one process's"
echo "mpi_check: cache-teacher on 2 ranks: the file is byte for byte one process's ($(stat -c %s "$work/logits-one.npy") bytes)"

# 5. A sweep across the ranks against one process: same rows, accuracies bit for bit (each run
# trains in one process either way; the queue only decides where).
sweep=(sweep --teacher "$work/teacher" --students "mlp:784-{8,16,32}-10" --seeds 2 --epochs 1 --speed-seconds 0.05 "${common[@]}")
"$distill" "${sweep[@]}" --output "$work/sweep-one" >/dev/null
"${mpirun[@]}" "$distill" "${sweep[@]}" --output "$work/sweep-two" >"$work/sweep-two.txt"
for f in sweep.jsonl sweep.csv sweep.html teacher_logits.npy; do [ -s "$work/sweep-two/$f" ] || fail "the 2-rank sweep did not write $f"; done
cmp -s "$work/sweep-one/teacher_logits.npy" "$work/sweep-two/teacher_logits.npy" || fail "the 2-rank sweep's teacher logits differ from one process's"
python3 - "$work/sweep-one/sweep.jsonl" "$work/sweep-two/sweep.jsonl" <<'EOF' || fail "the 2-rank sweep's rows differ from one process's"
import json, sys
one, two = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
key = lambda r: (r["name"], r["seed"], r["accuracy"], r["accuracy_scratch"], r["params"], r["fingerprint"])
same = [key(r) for r in one] == [key(r) for r in two]
print(f"mpi_check: sweep of {len(one)} (student, seed) pairs on 2 ranks: rows in the same order with the same accuracies as one process: {same}")
sys.exit(0 if same and len(one) == 6 else 1)
EOF
[ "$(grep -c '^mlp' "$work/sweep-two.txt")" -eq 3 ] || fail "rank 0 should print the sweep table once (3 students): $(cat "$work/sweep-two.txt")"

# 6. Ranks started with different settings: a clear error naming the rank, within seconds.
set +e
message=$(timeout 60 mpirun -np 1 -x DISTILL_THREADS "$distill" "${kd[@]}" --epochs 1 : -np 1 -x DISTILL_THREADS "$distill" "${kd[@]}" --epochs 1 --lr 0.01 2>&1)
status=$?
set -e
if [ $status -eq 0 ] || [ $status -eq 124 ] || ! grep -q "rank 1 of 2 started with a different configuration" <<<"$message"; then
  echo "mpi_check: ranks with different settings were not stopped with a clear error (exit $status):" >&2
  echo "$message" | head -20 >&2
  exit 1
fi
echo "mpi_check: ranks with different settings stop (exit $status): $(grep -m1 'different configuration' <<<"$message")"

# distill fit decides by each process's clock: under mpirun it stops at once with an error.
set +e
message=$("${mpirun[@]}" "$distill" fit --min-accuracy 0.5 "${common[@]}" --output "$work/fit" 2>&1)
status=$?
set -e
if [ $status -eq 0 ] || [ $status -eq 124 ] || ! grep -q "distill fit runs as one process" <<<"$message"; then
  fail "distill fit under mpirun did not stop with a clear error (exit $status): $(head -5 <<<"$message")"
fi
echo "mpi_check: distill fit under mpirun stops (exit $status): $(grep -m1 -o 'distill fit runs as one process[^;]*' <<<"$message")"

# 7. A rank killed in the middle of an epoch. 6,000 steps of 8 rows an epoch (about 1 s), so that
# the signal, sent when rank 0 prints step 601 of epoch 2 (its 10% progress line), lands well
# inside epoch 2 of 3 even on a fast host (with 1,000 steps an epoch, epoch 2 once ended before the
# signal landed); checkpoints are written at each epoch's end.
long=(kd --teacher "$work/teacher" --student mlp:784-64-10 --data fashion-mnist --train-limit 48000 --batch-size 8 --seed 1 --epochs 3)
"${mpirun[@]}" "$distill" "${long[@]}" --quiet --output "$work/uninterrupted" >/dev/null

# interrupt_rank1 SIGNAL NAME: runs `long` on 2 ranks into $work/NAME (log: $work/NAME.log),
# sends SIGNAL to rank 1 once rank 0's progress shows step 601 of epoch 2, and waits (at most 60 s)
# for mpirun to end; sets `status` (mpirun's exit status) and `seconds` (from the signal to the end).
interrupt_rank1() {
  local signal=$1 name=$2 log="$work/$2.log" victim="" deadline=$((SECONDS + 120))
  : >"$log"
  # MPI_CHECK_RUN marks this job's processes, to find rank 1 among every process of the host.
  MPI_CHECK_RUN=$name mpirun -np 2 -x DISTILL_THREADS -x MPI_CHECK_RUN "$distill" "${long[@]}" --output "$work/$name" >"$log" 2>&1 &
  local job=$!
  # Rank 1 is found first, while epoch 1 runs: looking through every process of the host takes
  # time that must not fall between step 601 and the signal.
  until [ -n "$victim" ]; do
    kill -0 $job 2>/dev/null || fail "$name: the 2-rank run ended before rank 1 was found: $(tail -5 "$log")"
    [ $SECONDS -lt $deadline ] || { kill $job; fail "$name: no process of rank 1 found within 120 s"; }
    for environ in /proc/[0-9]*/environ; do
      # -z: the variables are separated by NUL bytes; processes may end while this looks.
      if grep -qzx "MPI_CHECK_RUN=$name" "$environ" 2>/dev/null && grep -qzx "OMPI_COMM_WORLD_RANK=1" "$environ" 2>/dev/null; then
        victim=${environ#/proc/}; victim=${victim%/environ}
      fi
    done
  done
  until grep -q "epoch 2/3 .* 601/6000" "$log"; do
    kill -0 $job 2>/dev/null || fail "$name: the 2-rank run ended before epoch 2 reached step 601: $(tail -5 "$log")"
    [ $SECONDS -lt $deadline ] || { kill $job; fail "$name: epoch 2 did not reach step 601 within 120 s"; }
    sleep 0.02
  done
  local start=$(date +%s.%N)
  kill "-$signal" "$victim"
  deadline=$((SECONDS + 60))
  while kill -0 $job 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -9 $job; fail "$name: the job still runs 60 s after rank 1 got SIG$signal (a hang)"; }
    sleep 0.05
  done
  status=0
  wait $job || status=$?
  seconds=$(printf %.2f "$(echo "$(date +%s.%N) - $start" | bc)")
  [ "$(wc -l <"$work/$name/metrics.jsonl")" -eq 1 ] || fail "$name: SIG$signal did not land in epoch 2 (metrics.jsonl has $(wc -l <"$work/$name/metrics.jsonl") lines)"
}

# resumes_identically NAME: resumes $work/NAME on 2 ranks; its final weights must be the
# uninterrupted run's, bit for bit (same ranks, same seed: the resume replays the same steps).
resumes_identically() {
  "${mpirun[@]}" "$distill" train --resume "$work/$1" --quiet >/dev/null
  cmp -s "$work/$1/student.safetensors" "$work/uninterrupted/student.safetensors" ||
    fail "$1: the resumed run's weights differ from the uninterrupted run's"
}

interrupt_rank1 KILL killed
[ $status -ne 0 ] || fail "killed: mpirun exited 0 after rank 1 was killed"
grep -q "process rank 1 .*exited on signal 9" "$work/killed.log" || fail "killed: mpirun's message does not name rank 1: $(tail -8 "$work/killed.log")"
resumes_identically killed
echo "mpi_check: rank 1 killed (SIGKILL) at step 601+ of epoch 2: the job stopped $seconds s later (exit $status): $(grep -m1 -o 'mpirun noticed that process rank 1 .*' "$work/killed.log"); resumed from epoch 1's checkpoint: weights identical to the uninterrupted run's"

interrupt_rank1 TERM stopped
[ $status -eq 143 ] || fail "stopped: expected exit 143 (128 + SIGTERM), got $status: $(tail -8 "$work/stopped.log")"
grep -q "interrupted (signal 15) at epoch 2, after step .* checkpoint saved" "$work/stopped.log" || fail "stopped: no mid-epoch checkpoint message: $(tail -8 "$work/stopped.log")"
! grep -q "MPI_ABORT was invoked" "$work/stopped.log" || fail "stopped: the ranks stopped together, yet mpirun reports an MPI_Abort: $(tail -8 "$work/stopped.log")"
resumes_identically stopped
echo "mpi_check: rank 1 sent SIGTERM: every rank stopped $seconds s later (exit $status): $(grep -m1 -o 'interrupted (signal 15) at epoch 2, after step [0-9]* of [0-9]*' "$work/stopped.log"); resumed mid-epoch: weights identical to the uninterrupted run's"

# 8. Bad input. Two "hosts" as two working folders (mpirun -wdir): the same command line reads
# data.csv from each, as two hosts with their own copies of the data would.
mkdir -p "$work/host-a" "$work/host-b" "$work/host-c"
python3 - "$work/host-a/data.csv" "$work/host-c/data.csv" <<'EOF'
import random, sys
random.seed(3)
rows = ["a,b,label"] + [f"{a:.4f},{b:.4f},{int(a > b)}" for a, b in ((random.random(), random.random()) for _ in range(400))]
open(sys.argv[1], "w").write("\n".join(rows) + "\n")
rows[200] = rows[200].replace(",", "1,", 1)  # one value differs on the other host
open(sys.argv[2], "w").write("\n".join(rows) + "\n")
EOF
tabular=(train --data data.csv --label label --model mlp:2-8-2 --epochs 1 --seed 1 --quiet)
# two_hosts FOLDER_B: rank 0 in host-a, rank 1 in FOLDER_B; sets `message` and `status`.
two_hosts() {
  set +e
  message=$(timeout 60 mpirun -np 1 -x DISTILL_THREADS -wdir "$work/host-a" "$distill" "${tabular[@]}" : \
                              -np 1 -x DISTILL_THREADS -wdir "$work/$1" "$distill" "${tabular[@]}" 2>&1)
  status=$?
  set -e
  [ $status -ne 0 ] && [ $status -ne 124 ] || fail "rank 1 in $1: expected an error, got exit $status: $(head -8 <<<"$message")"
}
two_hosts host-b
grep -q "host-b/data.csv: no such file" <<<"$message" && grep -q "distill: rank 1 of 2 (host .*) stopped with exit status 1" <<<"$message" ||
  fail "a rank without the data: the error does not name the file and the rank: $(head -12 <<<"$message")"
echo "mpi_check: a rank that cannot read the data stops the job (exit $status): $(grep -m1 -o '[^ ]*host-b/data.csv: no such file' <<<"$message"); $(grep -m1 -o 'distill: rank 1 of 2.*' <<<"$message")"
two_hosts host-c
grep -q "rank 1 of 2 loaded different data from rank 0 with the same settings" <<<"$message" ||
  fail "a rank with a different copy of the data: no error naming it: $(head -12 <<<"$message")"
echo "mpi_check: a rank whose copy of the data differs in one value stops the job (exit $status): $(grep -m1 -o 'rank 1 of 2 loaded different data[^(]*' <<<"$message")"

# Hostfile typos: Open MPI's own checks, each within seconds (a misspelled host fails when ssh
# cannot resolve it; an unreachable one waits for ssh's timeout, see the README).
printf 'localhots slots=2\n' >"$work/hosts-misspelled"
printf 'localhost slots=two\n' >"$work/hosts-slots"
for hostfile in hosts-misspelled hosts-slots hosts-missing; do
  set +e
  start=$(date +%s.%N)
  message=$(timeout 60 mpirun --hostfile "$work/$hostfile" -np 2 -x DISTILL_THREADS "$distill" "${kd[@]}" --epochs 1 2>&1)
  status=$?
  set -e
  [ $status -ne 0 ] && [ $status -ne 124 ] || fail "$hostfile: expected an error, got exit $status: $(head -8 <<<"$message")"
  case $hostfile in
    hosts-misspelled) pattern="localhots|unable to reliably start" ;;
    hosts-slots) pattern="bad parameter in the hostfile" ;;
    hosts-missing) pattern="unable to open the hostfile" ;;
  esac
  grep -qE "$pattern" <<<"$message" || fail "$hostfile: Open MPI's message lacks '$pattern': $(head -8 <<<"$message")"
  echo "mpi_check: $hostfile: mpirun stops in $(printf %.2f "$(echo "$(date +%s.%N) - $start" | bc)") s (exit $status): $(grep -m1 -E "$pattern" <<<"$message" | sed 's/^ *//')"
done
echo "mpi_check: passed"
