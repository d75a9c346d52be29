#!/usr/bin/env bash
# Test accuracy of DistillKit's int8 against onnxruntime's own int8 on several students: for each
# student spec and seed, train $EPOCHS epochs (default 2) on Fashion-MNIST, `distill quantize` it (1,000
# calibration images; with the default compensated weight rounding and with --rounding nearest; with
# QAT=1 also with --qat, which fine-tunes 2 more epochs with fake quantization), export the
# float student to ONNX and quantize that with onnxruntime (scripts/ort_int8_reference.py:
# quantize_static, QDQ, per-channel, the same number of calibration images), then print float32,
# both DistillKit int8s and onnxruntime int8: accuracy, and agreement (the share of test images on
# which the int8 model predicts the float model's class), with the mean differences.
#   DISTILL=.build/release/distill SEEDS="1 2 3 4" STUDENTS="mlp:784-64-10 lenet5" scripts/int8_vs_ort.sh
#   DISTILL=.build/release/distill EPOCHS=15 QAT=1 OUT=runs/int8-vs-ort-15 scripts/int8_vs_ort.sh
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
        [ -f "$out/$name/best.safetensors" ] || "$distill" train --model "$spec" --epochs "${EPOCHS:-2}" --seed "$seed" --quiet --output "$out/$name" > /dev/null
        for rounding in compensated nearest; do
            [ -f "$out/$name.$rounding.json" ] || "$distill" quantize "$out/$name/best.safetensors" --calibration fashion-mnist --samples 1000 \
                --rounding "$rounding" --output "$out/$name-int8-$rounding.safetensors" --json > "$out/$name.$rounding.json"
        done
        if [ "${QAT:-0}" = 1 ] && [ ! -f "$out/$name.qat.json" ]; then
            "$distill" quantize "$out/$name/best.safetensors" --calibration fashion-mnist --samples 1000 --qat \
                --output "$out/$name-int8-qat.safetensors" --json > "$out/$name.qat.json"
        fi
        [ -f "$out/$name.ort.json" ] && continue
        "$distill" export "$out/$name/best.safetensors" --onnx "$out/$name.onnx" > /dev/null
        "$python" scripts/ort_int8_reference.py "$out/$name.onnx" --output "$out/$name.ort.onnx" --samples 1000 \
            > "$out/$name.ort.json" 2> /dev/null
    done
done
"$python" - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = []
for c_path in sorted(glob.glob(os.path.join(out, "*.compensated.json"))):
    name = os.path.basename(c_path)[: -len(".compensated.json")]
    c, n, o = (json.load(open(os.path.join(out, f"{name}.{kind}.json"))) for kind in ("compensated", "nearest", "ort"))
    rows.append((name, c, n, o))
print("| student, seed | float32 | int8, compensated | int8, nearest | onnxruntime int8 | agreement with float32: compensated / nearest / onnxruntime |")
print("| --- | --- | --- | --- | --- | --- |")
for name, c, n, o in rows:
    print(f"| {name} | {c['accuracy'] * 100:.2f}% | {c['accuracy_int8'] * 100:.2f}% | {n['accuracy_int8'] * 100:.2f}% | {o['accuracy'] * 100:.2f}% "
          f"| {c['agreement'] * 100:.2f} / {n['agreement'] * 100:.2f} / {o['agreement'] * 100:.2f}% |")
def summary(label, diffs):
    print(f"{label}: mean {statistics.mean(diffs):+.3f} points, median {statistics.median(diffs):+.3f}, "
          f"ahead on {sum(d > 0 for d in diffs)}, level on {sum(d == 0 for d in diffs)}, behind on {sum(d < 0 for d in diffs)}")
print(f"\n{len(rows)} students.")
summary("accuracy, compensated int8 minus onnxruntime's", [(c["accuracy_int8"] - o["accuracy"]) * 100 for _, c, _, o in rows])
summary("accuracy, nearest int8 minus onnxruntime's", [(n["accuracy_int8"] - o["accuracy"]) * 100 for _, _, n, o in rows])
summary("agreement, compensated minus onnxruntime's", [(c["agreement"] - o["agreement"]) * 100 for _, c, _, o in rows])
summary("agreement, compensated minus nearest", [(c["agreement"] - n["agreement"]) * 100 for _, c, n, _ in rows])
# --qat writes whichever int8 student, post-training or fine-tuned, is better on its validation rows.
written = {name: json.load(open(p)) for name in (r[0] for r in rows) if os.path.exists(p := os.path.join(out, f"{name}.qat.json"))}
if written:
    qat = {name: q["accuracy_int8_qat"] if q["written"] == "qat" else q["accuracy_int8_ptq"] for name, q in written.items()}
    print("\n| student, seed | float32 | int8 written by --qat | onnxruntime int8 |\n| --- | --- | --- | --- |")
    for name, c, _, o in rows:
        if name in qat:
            print(f"| {name} | {c['accuracy'] * 100:.2f}% | {qat[name] * 100:.2f}% ({written[name]['written']}) | {o['accuracy'] * 100:.2f}% |")
    summary("accuracy, --qat int8 minus onnxruntime's", [(qat[name] - o["accuracy"]) * 100 for name, _, _, o in rows if name in qat])
    summary("accuracy, --qat int8 minus float32", [(qat[name] - c["accuracy"]) * 100 for name, c, _, _ in rows if name in qat])
disagreement = {k: statistics.mean((1 - r[i]["agreement"]) * 100 for r in rows) for k, i in (("compensated", 1), ("nearest", 2), ("onnxruntime", 3))}
print("mean disagreement with float32, in percent of the test images: " + ", ".join(f"{k} {v:.3f}" for k, v in disagreement.items()))
PY
