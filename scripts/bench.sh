#!/usr/bin/env bash
# Speed comparison, DistillKit vs PyTorch vs onnxruntime, back to back on this machine.
#   1. training and distillation steps, MLP student inference (against a PyTorch reference script:
#      REFERENCE=path/to/pytorch_reference.py, the developers' own; see BENCHMARKS.md);
#   2. CNN students (lenet5, cnn-tiny) against onnxruntime on the students' own ONNX export;
#   3. imported teachers (scripts/export_bench_models.py) against onnxruntime on the same files;
#   4. int8 students (ONLY=int8): `distill quantize` of an MLP and a LeNet-5 student, their int8 plan
#      against the float32 plan, and onnxruntime's own int8 (quantize_static, QDQ) of the float
#      student's ONNX export (scripts/ort_int8_reference.py). INT8_STUDENTS names the float students
#      (.safetensors files; default: mlp:784-64-10 and lenet5 trained here for 2 epochs).
# Needs a Python with torch, torchvision, onnx, onnxruntime, scikit-learn and skl2onnx
# (TORCH_PYTHON, default ~/.venvs/torchref/bin/python). ONLY=steps,students,imported,int8 picks parts.
# Run it on an idle machine (check /proc/loadavg): shared cores make every figure noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${DISTILL:-}
if [ -z "$distill" ]; then swift build -c release --product distill >/dev/null; distill=.build/release/distill; fi
python=${TORCH_PYTHON:-$HOME/.venvs/torchref/bin/python}
reference=${REFERENCE:-}
models=${BENCH_MODELS:-.build/bench-models}
only=${ONLY:-steps,students,imported}
out=$(mktemp -d)
want() { [[ ",$only," == *",$1,"* ]]; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if want steps; then
    [ -n "$reference" ] || { echo "REFERENCE=path/to/pytorch_reference.py is needed for the step workloads (or ONLY=students,imported)" >&2; exit 2; }
    $distill bench train --model cnn-small --batch 128 --json > "$out/teacher-train.json"
    $distill bench kd --teacher cnn-small --student mlp:784-64-10 --batch 128 --json > "$out/kd-online.json"
    $distill bench kd --teacher cnn-small --student mlp:784-64-10 --batch 128 --cached-teacher --json > "$out/kd-offline.json"
    $distill bench infer --model mlp:784-64-10 --batch 1 --json > "$out/infer-b1.json"
    $distill bench infer --model mlp:784-64-10 --batch 256 --calls 2000 --json > "$out/infer-b256.json"
    "$python" "$reference" --json > "$out/reference.json"
fi
if want students; then
    for model in lenet5 cnn-tiny; do
        $distill bench infer --model $model --batch 1 --calls 5000 --onnx "$out/$model.onnx" --json > "$out/$model-b1.json"
        $distill bench infer --model $model --batch 256 --calls 200 --json > "$out/$model-b256.json"
        "$python" scripts/ort_reference.py "$out/$model.onnx" --batch 1 --calls 5000 > "$out/$model-b1.ort.json"
        "$python" scripts/ort_reference.py "$out/$model.onnx" --batch 256 --calls 200 > "$out/$model-b256.ort.json"
    done
fi
if want imported; then
    mkdir -p "$models"
    [ -f "$models/gradient_boosting.onnx" ] || "$python" scripts/export_bench_models.py "$models" 2>/dev/null
    # IMPORTED_PAIRS alternating pairs (ours, then onnxruntime) per case, default 3: the table
    # gives each side's median time and the median of the pairs' ratios. IMPORTED_CASES
    # ("model:batch ...") picks some of the cases.
    pairs=${IMPORTED_PAIRS:-3}
    cases=${IMPORTED_CASES:-"resnet18:256 mobilenet_v2:256 efficientnet_b0:256 lstm:1 lstm:256 gru:1 random_forest:1 random_forest:256 gradient_boosting:1"}
    for case in $cases; do
        model=${case%%:*} batch=${case##*:}
        for pair in $(seq 1 "$pairs"); do
            echo "imported $model batch $batch, pair $pair: load $(cut -d' ' -f1 /proc/loadavg)" >&2
            $distill bench onnx --model "$models/$model.onnx" --batch $batch --json > "$out/$model-b$batch.pair$pair.json"
            "$python" scripts/ort_reference.py "$models/$model.onnx" --batch $batch > "$out/$model-b$batch.pair$pair.ort.json"
        done
    done
fi
if want int8; then
    students=${INT8_STUDENTS:-}
    if [ -z "$students" ]; then
        for spec in mlp:784-64-10 lenet5; do
            $distill train --model $spec --epochs 2 --output "$out/train-${spec//:/_}" --quiet > /dev/null
            students="$students $out/train-${spec//:/_}/best.safetensors"
        done
    fi
    k=0
    for student in $students; do
        k=$((k + 1))
        $distill quantize "$student" --calibration fashion-mnist --samples 1000 --output "$out/int8-$k.safetensors" --json > "$out/int8-$k.quantize.json"
        for batch in 1 256; do
            calls=$([ $batch = 1 ] && echo 5000 || echo 200)
            $distill bench infer --model "$student" --batch $batch --calls $calls --json > "$out/int8-$k.float-b$batch.json"
            $distill bench infer --model "$out/int8-$k.safetensors" --batch $batch --calls $calls --json > "$out/int8-$k.int8-b$batch.json"
        done
        $distill export "$student" --onnx "$out/int8-$k.float.onnx" > /dev/null
        "$python" scripts/ort_int8_reference.py "$out/int8-$k.float.onnx" --output "$out/int8-$k.ort.onnx" --samples 1000 > "$out/int8-$k.ort-int8.json" 2> /dev/null
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
def load(name):
    path = os.path.join(d, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
fmt = lambda v: "" if v is None else (f"{v:,.0f}" if v > 100 else f"{v:.2f}")
def row(name, unit, ours, torch=None, ort=None, higher=True):
    ratio = lambda other: "" if other is None else f"{(ours / other if higher else other / ours):.2f}x"
    print(f"| {name} | {unit} | {fmt(ours)} | {fmt(torch)} | {fmt(ort)} | {ratio(torch)} | {ratio(ort)} |")
print("| workload | unit | DistillKit | PyTorch | onnxruntime | DistillKit / PyTorch | DistillKit / onnxruntime |")
print("| --- | --- | --- | --- | --- | --- | --- |")
ref = load("reference")
if ref:
    for name in ["teacher-train", "kd-online", "kd-offline"]:
        row(name, "samples/s", load(name)["samples_per_second"], ref[name])
    row("infer-b1", "µs (p50)", load("infer-b1")["latency_us_p50"], ref["infer-b1-us"], ref.get("ort-infer-b1-us"), higher=False)
    row("infer-b256", "samples/s", load("infer-b256")["samples_per_second"], ref["infer-b256"], ref.get("ort-infer-b256"))
for model in ["lenet5", "cnn-tiny"]:
    b1, b256 = load(f"{model}-b1"), load(f"{model}-b256")
    if b1:
        row(f"{model} b1 ({b1['path']})", "µs (p50)", b1["latency_us_p50"], ort=load(f"{model}-b1.ort")["latency_us_p50"], higher=False)
        row(f"{model} b256 ({b256['path']})", "samples/s", b256["samples_per_second"], ort=load(f"{model}-b256.ort")["samples_per_second"])
# Imported models: medians over the alternating pairs (the ratio: the median of the pairs' ratios).
median = lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
pairs = {}
for f in sorted(os.listdir(d)):
    if ".pair" in f and f.endswith(".ort.json"):
        name, pair = f[:-len(".ort.json")].rsplit(".pair", 1)
        pairs.setdefault(name, []).append((load(f"{name}.pair{pair}")["us_per_sample"], load(f"{name}.pair{pair}.ort")["us_per_sample"]))
for name, runs in sorted(pairs.items()):
    ours, ort = median([r[0] for r in runs]), median([r[1] for r in runs])
    ratios = ", ".join(f"{o / u:.2f}" for u, o in runs)
    print(f"| onnx {name} ({len(runs)} pairs: {ratios}) | µs/sample | {fmt(ours)} | | {fmt(ort)} | | {median([o / u for u, o in runs]):.2f}x |")
k = 1
while load(f"int8-{k}.quantize"):
    q, ort8 = load(f"int8-{k}.quantize"), load(f"int8-{k}.ort-int8")
    f1, i1, f256, i256 = (load(f"int8-{k}.{kind}-b{b}") for kind, b in [("float", 1), ("int8", 1), ("float", 256), ("int8", 256)])
    name = f"int8 {q['spec']}"
    print(f"| {name} accuracy (float32 {q['accuracy'] * 100:.2f}%) | % | {q['accuracy_int8'] * 100:.2f} | | {ort8['accuracy'] * 100:.2f} | | {(q['accuracy_int8'] - ort8['accuracy']) * 100:+.2f} points |")
    row(f"{name} b1 (float32 plan {f1['latency_us_p50']:.2f} µs: {f1['latency_us_p50'] / i1['latency_us_p50']:.2f}x)", "µs (p50)", i1["latency_us_p50"], ort=ort8["latency_us_p50"], higher=False)
    row(f"{name} b256 (float32 plan {f256['samples_per_second']:,.0f}/s: {i256['samples_per_second'] / f256['samples_per_second']:.2f}x)", "samples/s", i256["samples_per_second"], ort=ort8["samples_per_second"])
    row(f"{name} file (float32 {q['file_bytes']:,} B: {q['file_bytes'] / q['file_bytes_int8']:.2f}x smaller)", "bytes", q["file_bytes_int8"], ort=ort8["bytes"], higher=False)
    k += 1
print("\n(ratios > 1 mean DistillKit is faster; for times the ratio is the other's over ours)")
if ref:
    print(f"PyTorch {ref['torch']}, {ref['threads']} threads", end="; ")
any_run = load("teacher-train") or load("lenet5-b1") or load("resnet18-b256.pair1")
if any_run:
    print(f"DistillKit BLAS: {any_run['blas']}")
PY
