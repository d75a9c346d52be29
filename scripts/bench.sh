#!/usr/bin/env bash
# Speed comparison, DistillKit vs PyTorch vs onnxruntime, back to back on this machine
# (issue 5 workloads). Needs the PyTorch reference environment described in
# ../shared/bench/pytorch_reference.py (default: ~/.venvs/torchref; override with TORCH_PYTHON).
# Run it on an idle machine (check /proc/loadavg): shared cores make every figure noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
distill=${DISTILL:-}
if [ -z "$distill" ]; then swift build -c release --product distill >/dev/null; distill=.build/release/distill; fi
python=${TORCH_PYTHON:-$HOME/.venvs/torchref/bin/python}
reference=${REFERENCE:-../shared/bench/pytorch_reference.py}
out=$(mktemp -d)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
$distill bench train --model cnn-small --batch 128 --json > "$out/teacher-train.json"
$distill bench kd --teacher cnn-small --student mlp:784-64-10 --batch 128 --json > "$out/kd-online.json"
$distill bench kd --teacher cnn-small --student mlp:784-64-10 --batch 128 --cached-teacher --json > "$out/kd-offline.json"
$distill bench infer --model mlp:784-64-10 --batch 1 --json > "$out/infer-b1.json"
$distill bench infer --model mlp:784-64-10 --batch 256 --calls 2000 --json > "$out/infer-b256.json"
"$python" "$reference" --json > "$out/reference.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
load = lambda n: json.load(open(os.path.join(d, n + ".json")))
ref = load("reference")
rows = [
    ("teacher-train", load("teacher-train")["samples_per_second"], ref["teacher-train"], None, "samples/s", True),
    ("kd-online", load("kd-online")["samples_per_second"], ref["kd-online"], None, "samples/s", True),
    ("kd-offline", load("kd-offline")["samples_per_second"], ref["kd-offline"], None, "samples/s", True),
    ("infer-b1", load("infer-b1")["latency_us_p50"], ref["infer-b1-us"], ref.get("ort-infer-b1-us"), "µs (p50)", False),
    ("infer-b256", load("infer-b256")["samples_per_second"], ref["infer-b256"], ref.get("ort-infer-b256"), "samples/s", True),
]
print(f"PyTorch {ref['torch']}, {ref['threads']} threads; DistillKit BLAS: {load('teacher-train')['blas']}\n")
print("| workload | unit | DistillKit | PyTorch | onnxruntime | DistillKit / PyTorch | DistillKit / onnxruntime |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, ours, torch, ort, unit, higher in rows:
    ratio = lambda other: "" if other is None else f"{(ours / other if higher else other / ours):.2f}x"
    fmt = lambda v: "" if v is None else (f"{v:,.0f}" if v > 100 else f"{v:.2f}")
    print(f"| {name} | {unit} | {fmt(ours)} | {fmt(torch)} | {fmt(ort)} | {ratio(torch)} | {ratio(ort)} |")
print("\n(ratios > 1 mean DistillKit is faster; for latency the ratio is the other's µs over ours)")
PY
