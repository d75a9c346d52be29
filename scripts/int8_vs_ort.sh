#!/usr/bin/env bash
# Test accuracy of DistillKit's int8 against onnxruntime's own int8 on several students: for each
# student spec and seed, train 2 epochs on Fashion-MNIST, `distill quantize` it (1,000 calibration
# images), export the float student to ONNX and quantize that with onnxruntime
# (scripts/ort_int8_reference.py: quantize_static, QDQ, per-channel, the same number of calibration
# images), then print float32, DistillKit int8 and onnxruntime int8 accuracy and the mean difference.
#   DISTILL=.build/release/distill SEEDS="1 2 3 4" STUDENTS="mlp:784-64-10 lenet5" scripts/int8_vs_ort.sh
# Needs the test venv (.venv: numpy, onnx, onnxruntime). Finished students are kept in $OUT and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${DISTILL:-.build/release/distill}
python=${PYTHON:-.venv/bin/python}
out=${OUT:-runs/int8-vs-ort}
mkdir -p "$out"
for seed in ${SEEDS:-1 2 3 4}; do
    for spec in ${STUDENTS:-mlp:784-64-10 lenet5}; do
        name="${spec//:/_}-$seed"
        [ -f "$out/$name.ort.json" ] && continue
        "$distill" train --model "$spec" --epochs 2 --seed "$seed" --quiet --output "$out/$name" > /dev/null
        "$distill" quantize "$out/$name/best.safetensors" --calibration fashion-mnist --samples 1000 \
            --output "$out/$name-int8.safetensors" --json > "$out/$name.quantize.json"
        "$distill" export "$out/$name/best.safetensors" --onnx "$out/$name.onnx" > /dev/null
        "$python" scripts/ort_int8_reference.py "$out/$name.onnx" --output "$out/$name.ort.onnx" --samples 1000 \
            > "$out/$name.ort.json" 2> /dev/null
    done
done
"$python" - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
diffs = []
print("| student, seed | float32 | DistillKit int8 (calibration) | onnxruntime int8 | difference |")
print("| --- | --- | --- | --- | --- |")
for q_path in sorted(glob.glob(os.path.join(out, "*.quantize.json"))):
    name = os.path.basename(q_path)[: -len(".quantize.json")]
    q, o = json.load(open(q_path)), json.load(open(os.path.join(out, name + ".ort.json")))
    d = (q["accuracy_int8"] - o["accuracy"]) * 100
    diffs.append(d)
    print(f"| {name} | {q['accuracy'] * 100:.2f}% | {q['accuracy_int8'] * 100:.2f}% ({q['calibration']}) | {o['accuracy'] * 100:.2f}% | {d:+.2f} |")
print(f"\n{len(diffs)} students: DistillKit's int8 minus onnxruntime's, mean {statistics.mean(diffs):+.3f} points, "
      f"median {statistics.median(diffs):+.3f}, ahead on {sum(d > 0 for d in diffs)}, level on {sum(d == 0 for d in diffs)}, "
      f"behind on {sum(d < 0 for d in diffs)}")
PY
