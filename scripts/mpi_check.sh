#!/usr/bin/env bash
# Data-parallel training under Open MPI against one process (issue 17): `distill kd` for one epoch
# on 2,000 Fashion-MNIST rows, once as one process and once as `mpirun -np 2` with the same seed
# and global batch; prints the max abs difference of the two students' weights (float summation
# order is the only difference, so it must stay tiny), then checks that ranks started with
# different settings stop with an error naming the rank, without hanging.
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
# Root (CI) needs Open MPI's explicit consent; one thread per rank so 2 ranks fit 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DISTILL_THREADS=1
mpirun=(mpirun -np 2 -x DISTILL_THREADS)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--data fashion-mnist --train-limit 2000 --epochs 1 --batch-size 128 --seed 1 --quiet)

"$distill" train --model mlp:784-128-10 "${common[@]}" --output "$work/teacher" >/dev/null
kd=(kd --teacher "$work/teacher" --student mlp:784-64-10 "${common[@]}")

start=$(date +%s.%N)
"$distill" "${kd[@]}" --output "$work/one" >/dev/null
middle=$(date +%s.%N)
timeout 120 "${mpirun[@]}" "$distill" "${kd[@]}" --output "$work/two" >/dev/null
end=$(date +%s.%N)
echo "mpi_check: 1 process $(echo "$middle - $start" | bc) s, mpirun -np 2 $(echo "$end - $middle" | bc) s (whole commands: data loading, teacher logits and the test set included)"

# Rank 0 alone writes the run folder: one metrics line with the communication figures.
grep -q '"ranks":2' "$work/two/metrics.jsonl" || { echo "mpi_check: metrics.jsonl lacks the 2-rank line" >&2; exit 1; }

if [ -x "$python" ] && "$python" -c "import numpy, safetensors" 2>/dev/null; then
  "$python" - "$work/one/student.safetensors" "$work/two/student.safetensors" "$tolerance" <<'EOF'
import sys
from safetensors.numpy import load_file
one, two, tolerance = load_file(sys.argv[1]), load_file(sys.argv[2]), float(sys.argv[3])
assert one.keys() == two.keys(), (sorted(one), sorted(two))
worst = max(float(abs(one[k].astype("float64") - two[k]).max()) for k in one)
largest = max(float(abs(one[k]).max()) for k in one)
print(f"mpi_check: max abs weight difference, 1 process vs 2 ranks: {worst:.3g} (largest weight {largest:.3g}, tolerance {tolerance:g})")
sys.exit(0 if worst <= tolerance else 1)
EOF
else
  cmp -s "$work/one/student.safetensors" "$work/two/student.safetensors" \
    && echo "mpi_check: weights identical" \
    || echo "mpi_check: no .venv with numpy+safetensors (scripts/setup-tests.sh) to measure the weight difference"
fi

# Ranks started with different settings: a clear error naming the rank, within seconds.
set +e
message=$(timeout 60 mpirun -np 1 -x DISTILL_THREADS "$distill" "${kd[@]}" : -np 1 -x DISTILL_THREADS "$distill" "${kd[@]}" --lr 0.01 2>&1)
status=$?
set -e
if [ $status -eq 0 ] || [ $status -eq 124 ] || ! grep -q "rank 1 of 2 started with a different configuration" <<<"$message"; then
  echo "mpi_check: ranks with different settings were not stopped with a clear error (exit $status):" >&2
  echo "$message" | head -20 >&2
  exit 1
fi
echo "mpi_check: ranks with different settings stop (exit $status): $(grep -m1 'different configuration' <<<"$message")"
echo "mpi_check: passed"
