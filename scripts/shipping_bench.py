#!/usr/bin/env python3
"""Sizes and batch-1 latency of an exported student: C (compiled here), LiteRT's interpreter, DistillKit's runtime.

    .venv/bin/python scripts/shipping_bench.py --distill .build/release/distill MODEL.safetensors [MODEL ...]

For each saved model: `distill export` writes the .c/.h, .tflite and .mlmodel (an int8 model from `distill quantize`:
the integer .c/.h, the integer .tflite with int16 logits and the Core ML file with 8-bit weights); the C file is compiled with
`cc -O2 -std=c99` (and, for comparison, `-O3 -march=native`) together with a timing driver (one image at a time, clock_gettime around each call); LiteRT's
Interpreter (ai-edge-litert, one thread) is timed around invoke() on the same image; DistillKit is timed by
`distill bench infer --model MODEL` (its batch-1 inference plan). The three run back to back, `--rounds` times
in turn, and the table gives the median of the rounds' medians. Latencies depend on the machine's load: the
script prints /proc/loadavg before and after. Outputs a Markdown table.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

TIMING_DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "student.h"
static int compare(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int calls = atoi(argv[1]), i, sink = 0;
    static float x[STUDENT_INPUT_SIZE], y[STUDENT_OUTPUT_SIZE];
    double *us = malloc(sizeof(double) * calls);
    for (i = 0; i < STUDENT_INPUT_SIZE; ++i) x[i] = (float)((i * 37) % 255) / 255.0f;
    for (i = 0; i < 200; ++i) sink += student_predict(x, y);
    for (i = 0; i < calls; ++i) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        sink += student_predict(x, y);
        clock_gettime(CLOCK_MONOTONIC, &b);
        us[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(us, calls, sizeof(double), compare);
    printf("%.3f %.3f %d\n", us[calls / 2], us[calls * 9 / 10], sink);
    return 0;
}
"""


def run(*args, **kwargs):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kwargs)


def c_latency(folder, calls, binary="timing"):
    out = run(folder / binary, calls).stdout.split()
    return float(out[0])


def litert_latency(path, shape, calls):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    x = (np.arange(np.prod(shape)) * 37 % 255 / 255).astype(np.float32).reshape(shape)
    for _ in range(200):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    times = []
    for _ in range(calls):
        interpreter.set_tensor(index, x)
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def is_int8(model):
    """Whether a .safetensors file is an int8 student (`distillkit.quantization` = int8 in its metadata)."""
    with open(model, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
    return header.get("__metadata__", {}).get("distillkit.quantization") == "int8"


def distill_latency(distill, model, calls):
    result = json.loads(run(distill, "bench", "infer", "--model", model, "--calls", calls, "--json").stdout)
    return result["latency_us_p50"], result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--distill", required=True, type=Path, help="the distill binary (a release build for timing)")
    parser.add_argument("--export-with", type=Path, help="a distill binary for the exports (default: --distill)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exporter = args.export_with or args.distill
    cc = shutil.which("cc") or "cc"
    print("load before:", Path("/proc/loadavg").read_text().strip())
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            int8 = is_int8(model)
            folder = Path(work) / f"{model.parent.name}-{model.stem}"
            folder.mkdir()
            source = folder / "student.c"
            run(exporter, "export", model, "--c", source)
            run(exporter, "export", model, "--tflite", folder / "student.tflite")
            run(exporter, "export", model, "--coreml", folder / "student.mlmodel")
            (folder / "timing.c").write_text(TIMING_DRIVER)
            run(cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "student.c", "-o", "student.o", cwd=folder)
            run(cc, "-O2", "timing.c", "student.o", "-o", "timing", "-lm", cwd=folder)
            run(cc, "-O3", "-march=native", "-std=c99", "-c", "student.c", "-o", "native.o", cwd=folder)
            run(cc, "-O2", "timing.c", "native.o", "-o", "timing-native", "-lm", cwd=folder)
            text_data = run("size", folder / "student.o").stdout.splitlines()[1].split()
            summary = json.loads(run(args.distill, "inspect", model, "--json").stdout)
            spec = summary["format"].split("(", 1)[1].rstrip(")") + (" int8" if int8 else "")
            tflite_summary = json.loads(run(exporter, "inspect", folder / "student.tflite", "--json").stdout)
            shape = [1] + [int(d) for d in tflite_summary["inputs"][0]["shape"].strip("[]").split(",")[1:]]
            timings = {"distill": [], "c": [], "c_native": [], "litert": []}
            for _ in range(args.rounds):
                timings["distill"].append(distill_latency(args.distill, model, args.calls)[0])
                timings["c"].append(c_latency(folder, args.calls))
                timings["c_native"].append(c_latency(folder, args.calls, "timing-native"))
                timings["litert"].append(litert_latency(folder / "student.tflite", shape, args.calls))
            rows.append(dict(
                spec=spec, params=tflite_summary["parameters"] if int8 else summary["parameters"], safetensors=model.stat().st_size,
                c_source=source.stat().st_size, c_object=int(text_data[0]) + int(text_data[1]) + int(text_data[2]),
                tflite=(folder / "student.tflite").stat().st_size,
                mlmodel=(folder / "student.mlmodel").stat().st_size,
                **{k: statistics.median(v) for k, v in timings.items()}))
    print("load after:", Path("/proc/loadavg").read_text().strip())
    print()
    print("| student | params | .safetensors | .c source | compiled .o (text+data+bss) | .tflite | .mlmodel "
          "| DistillKit µs | C -O2 µs | C -O3 -march=native µs | LiteRT µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['spec']} | {r['params']:,} | {r['safetensors']:,} | {r['c_source']:,} | {r['c_object']:,} | {r['tflite']:,} | "
              f"{'—' if r['mlmodel'] is None else format(r['mlmodel'], ',')} | {r['distill']:.1f} | {r['c']:.1f} | {r['c_native']:.1f} | {r['litert']:.1f} |")


if __name__ == "__main__":
    main()
