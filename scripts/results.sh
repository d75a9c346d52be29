#!/usr/bin/env bash
# Reproduces the README's results table: the teacher and two students (MLP 784-64-10, LeNet-5),
# each from scratch, with kd and with dkd, over seeds 0-2, then prints the table.
# Students are distilled from the seed-0 teacher (runs/teacher). Takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# DISTILL names a prebuilt binary (e.g. while the sources are being edited); otherwise build one.
distill=${DISTILL:-}
if [ -z "$distill" ]; then swift build -c release --product distill; distill=.build/release/distill; fi
out=runs/results
mkdir -p "$out"
for seed in 0 1 2; do
  dir=$out/teacher-s$seed; [ "$seed" = 0 ] && dir=runs/teacher
  [ -f "$dir/summary.json" ] || $distill run examples/teacher.yaml --seed "$seed" --output "$dir" --quiet
done
for student in mlp cnn; do
  for method in scratch kd dkd; do
    for seed in 0 1 2; do
      dir=$out/$student-$method-s$seed
      [ -f "$dir/summary.json" ] || $distill run "examples/$student-$method.yaml" --seed "$seed" --output "$dir" --quiet
    done
  done
done
python3 scripts/results_table.py "$out" runs/teacher
